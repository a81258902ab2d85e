package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/gantry-dev/gantry/api"
)

// imageCmd dispatches the image subcommands.
type imageCmd struct {
	app *app
}

var imageHelp = cmdHelp{
	usage: "image import|ls|pull [arguments]",
	summary: `Manage the server's image cache:
  image import FILE         import a docker save or OCI layout tarball
  image ls [-o table|json]  list cached images
  image pull REF            pull an image from a registry`,
}

func newImageCmd(a *app) *imageCmd { return &imageCmd{app: a} }

// Run runs gantry image.
func (c *imageCmd) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("image", "missing subcommand: expected import, ls or pull")
	}
	switch args[0] {
	case "import":
		return newImageImportCmd(c.app).Run(ctx, args[1:])
	case "ls", "list":
		return newImageLsCmd(c.app).Run(ctx, args[1:])
	case "pull":
		return newImagePullCmd(c.app).Run(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		printHelp(c.app.stdout, newFlagSet("image"), imageHelp)
		return errHelp
	}
	return usagef("image", "unknown subcommand %q: expected import, ls or pull", args[0])
}

// printImages prints images as a table.
func printImages(a *app, imgs []api.Image) error {
	tw := newTable(a.stdout, "REF", "DIGEST", "SIZE", "LAYERS")
	for _, img := range imgs {
		row(tw, img.Ref, shortDigest(img.Digest), humanBytes(img.Size), strconv.Itoa(img.Layers))
	}
	return tw.Flush()
}

// pullWithProgress pulls ref, showing progress on w.
func pullWithProgress(ctx context.Context, a *app, cl *client, ref string) (api.Image, error) {
	p := newProgressPrinter(a.stdout, "pulling "+ref)
	var img api.Image
	err := cl.callWithProgress(ctx, api.ToolPullImage, api.PullImageInput{Ref: ref}, &img, func(n *progressParams) {
		p.update(n.Progress, n.Total)
	})
	p.finish()
	if err != nil {
		return api.Image{}, fmt.Errorf("pulling %s: %w", ref, err)
	}
	return img, nil
}

// imageFlagSet is shared by the image subcommands for their names.
func imageFlagSet(sub string) *flag.FlagSet { return newFlagSet("image " + sub) }
