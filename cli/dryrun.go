package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/gantry-dev/gantry/api"
)

// dryRunPull asks what pulling ref would download and prints it.
func dryRunPull(ctx context.Context, a *app, cl *client, ref string) error {
	var res api.PullImageResult
	if err := cl.call(ctx, api.ToolPullImage, api.PullImageInput{Ref: ref, DryRun: true}, &res); err != nil {
		return err
	}
	if res.Plan == nil {
		return fmt.Errorf("the server returned no plan for the dry run of pulling %s", ref)
	}
	fmt.Fprintln(a.stdout, "dry run, nothing downloaded:")
	printImagePlan(a.stdout, *res.Plan, "to fetch")
	return nil
}

// printImagePlan prints an image a pull or import would bring in, with its
// layers and what is cached already; todo says what happens to the others
// ("to fetch" from a registry, "to import" from a tarball).
func printImagePlan(w io.Writer, p api.ImagePlan, todo string) {
	fmt.Fprintf(w, "%s -> %s: %d layer(s), %s; %d cached, %s %s\n",
		p.Ref, shortDigest(p.Digest), len(p.Layers), humanBytes(p.Size), p.CachedLayers, humanBytes(p.DownloadBytes), todo)
	for _, l := range p.Layers {
		state := todo
		if l.Cached {
			state = "cached"
		}
		fmt.Fprintf(w, "  layer %s  %9s  %s\n", shortDigest(l.Digest), humanBytes(l.Size), state)
	}
}
