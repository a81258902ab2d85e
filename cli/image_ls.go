package cli

import (
	"context"
	"flag"

	"github.com/gantry-dev/gantry/api"
)

// imageLsCmd lists cached images.
type imageLsCmd struct {
	app    *app
	fs     *flag.FlagSet
	output *outputFormat
}

var imageLsHelp = cmdHelp{
	usage:   "image ls [-o table|json]",
	summary: "List the images in the server's image cache: reference, digest, size and layer count.",
}

func newImageLsCmd(a *app) *imageLsCmd {
	c := &imageLsCmd{app: a, fs: imageFlagSet("ls")}
	c.output = a.outputFlag(c.fs)
	a.g.register(c.fs)
	return c
}

// Run runs gantry image ls.
func (c *imageLsCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, imageLsHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("image ls", pos); err != nil {
		return err
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.ImageList
	if err := cl.call(ctx, api.ToolListImages, struct{}{}, &list); err != nil {
		return err
	}
	if *c.output == "json" {
		return printJSON(c.app.stdout, list)
	}
	return printImages(c.app, list.Images)
}
