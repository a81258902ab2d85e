package cli

import (
	"context"
	"flag"
	"fmt"
)

// imagePullCmd pulls an image.
type imagePullCmd struct {
	app    *app
	fs     *flag.FlagSet
	dryRun bool
}

var imagePullHelp = cmdHelp{
	usage:   "image pull REF [--dry-run]",
	summary: "Pull image REF (e.g. 127.0.0.1:5000/demo/web:1) from its registry into the server's image cache, showing progress.",
}

func newImagePullCmd(a *app) *imagePullCmd {
	c := &imagePullCmd{app: a, fs: imageFlagSet("pull")}
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "download nothing: print the digest REF resolves to, the layers already cached and the bytes a pull would download")
	a.g.register(c.fs)
	return c
}

// Run runs gantry image pull.
func (c *imagePullCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, imagePullHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("image pull", pos, "REF"); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	if c.dryRun {
		return dryRunPull(ctx, c.app, cl, pos[0])
	}
	img, err := pullWithProgress(ctx, c.app, cl, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.app.stdout, "pulled %s (%s, %s)\n", img.Ref, shortDigest(img.Digest), humanBytes(img.Size))
	return nil
}
