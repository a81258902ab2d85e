package cli

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/gantry-dev/gantry/api"
)

// imageImportCmd imports an image tarball.
type imageImportCmd struct {
	app    *app
	fs     *flag.FlagSet
	dryRun bool
}

var imageImportHelp = cmdHelp{
	usage: "image import FILE [--dry-run]",
	summary: `Import a docker save or OCI layout tarball into the server's image cache.
FILE is read by the gantry server on its own host: the CLI sends its absolute
path, not its content. With a remote server, copy the file to that host first.`,
}

func newImageImportCmd(a *app) *imageImportCmd {
	c := &imageImportCmd{app: a, fs: imageFlagSet("import")}
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "import nothing: check FILE and print the images it holds with their sizes and cached layers")
	a.g.register(c.fs)
	return c
}

// Run runs gantry image import.
func (c *imageImportCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, imageImportHelp, args)
	if err != nil {
		return err
	}
	if err := exactArgs("image import", pos, "FILE"); err != nil {
		return err
	}
	path, err := filepath.Abs(pos[0])
	if err != nil {
		return fmt.Errorf("resolving %s: %w", pos[0], err)
	}
	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	var list api.ImportImageResult
	if err := cl.call(ctx, api.ToolImportImage, api.ImportImageInput{Path: path, DryRun: c.dryRun}, &list); err != nil {
		return err
	}
	if c.dryRun {
		fmt.Fprintf(c.app.stdout, "dry run, nothing imported: %s is a valid %s tarball with %d image(s)\n", path, list.Format, len(list.Plan))
		for _, p := range list.Plan {
			printImagePlan(c.app.stdout, p, "to import")
		}
		return nil
	}
	fmt.Fprintf(c.app.stdout, "imported %d image(s) from %s\n", len(list.Images), path)
	return printImages(c.app, list.Images)
}
