package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/spec"
)

// deployCmd deploys a spec file and waits for the rollout.
type deployCmd struct {
	app     *app
	fs      *flag.FlagSet
	file    string
	detach  bool
	timeout time.Duration
	pull    string
	dryRun  bool
}

var deployHelp = cmdHelp{
	usage: "deploy -f FILE [--dry-run] [--detach] [--timeout 5m] [--pull missing|always|never]",
	summary: `Create or update the service described by FILE (YAML or JSON). The file is
checked locally first, so mistakes are reported with their line. The image is
pulled (with progress) unless it is cached, the spec deployed, and then, unless
--detach, gantry waits until every replica of the new version is running and
healthy, printing each instance state change. It fails when an instance of the
new version fails or crash-loops (with its exit code and reason), or at the timeout.`,
}

func newDeployCmd(a *app) *deployCmd {
	c := &deployCmd{app: a, fs: newFlagSet("deploy")}
	c.fs.StringVar(&c.file, "f", "", "the service spec `FILE` (YAML or JSON); - reads it from stdin")
	c.fs.BoolVar(&c.detach, "detach", false, "return after the deploy is accepted instead of waiting for the rollout")
	c.fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "how long to wait for the rollout (at most 1h)")
	c.fs.StringVar(&c.pull, "pull", "missing", "when to pull the image first: missing (not cached), always or never")
	c.fs.BoolVar(&c.dryRun, "dry-run", false, "change nothing: print the plan (fields changed, instances to create, replace and stop) and its ID for gantry apply")
	a.g.register(c.fs)
	return c
}

// Run runs gantry deploy.
func (c *deployCmd) Run(ctx context.Context, args []string) error {
	pos, err := c.app.parse(c.fs, deployHelp, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usagef("deploy", "unexpected argument %q: pass the spec file with -f FILE", pos[0])
	case c.file == "":
		return usagef("deploy", "-f: expected the spec FILE to deploy, e.g. gantry deploy -f web.yaml")
	case c.timeout <= 0 || c.timeout > time.Hour:
		return usagef("deploy", "--timeout: expected a positive duration up to 1h such as 5m, got %s", c.timeout)
	case c.pull != "missing" && c.pull != "always" && c.pull != "never":
		return usagef("deploy", "--pull: expected missing, always or never, got %q", c.pull)
	}
	data, source, err := c.readSpec(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the spec: %w", err)
	}
	svc, err := spec.Parse(data, source)
	if err != nil {
		return fmt.Errorf("%s is invalid; nothing was deployed:\n%w", source, err)
	}

	cl, err := c.app.connect(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	if c.dryRun {
		return c.plan(ctx, cl, data)
	}
	if err := c.ensureImage(ctx, cl, svc.Image); err != nil {
		return err
	}
	if !c.detach {
		return c.deployAndWait(ctx, cl, svc.Name, data)
	}
	var res api.DeployResult
	// The file's text is sent as is, so server-side errors carry its lines.
	if err := cl.call(ctx, api.ToolDeploy, api.DeployInput{SpecYAML: string(data)}, &res); err != nil {
		return err
	}
	printDeployed(c.app.stdout, res)
	fmt.Fprintf(c.app.stdout, "follow the rollout with: gantry status %s\n", res.Service)
	return nil
}

// printDeployed says what the deploy changed.
func printDeployed(w io.Writer, res api.DeployResult) {
	switch {
	case res.Created:
		fmt.Fprintf(w, "service %s created (version %d, %s)\n", res.Service, res.Version, plural(res.Desired, "replica"))
	case res.Changed && len(res.Changes) > 0:
		fmt.Fprintf(w, "service %s updated to version %d: changed %s\n", res.Service, res.Version, strings.Join(res.Changes, ", "))
	case res.Changed:
		fmt.Fprintf(w, "service %s updated (version %d, %s)\n", res.Service, res.Version, plural(res.Desired, "replica"))
	default:
		fmt.Fprintf(w, "service %s unchanged (version %d)\n", res.Service, res.Version)
	}
}

// readSpec reads the spec from -f FILE, or from stdin for -f - (as kubectl
// apply -f - does), and returns it with the name its errors use.
func (c *deployCmd) readSpec(ctx context.Context) ([]byte, string, error) {
	if c.file != "-" {
		data, err := readSpecFile(ctx, c.file)
		return data, c.file, err
	}
	if c.app.stdin == nil {
		return nil, "stdin", fmt.Errorf("-f -: no standard input")
	}
	data, err := io.ReadAll(io.LimitReader(c.app.stdin, spec.MaxSpecSize+1))
	if err != nil {
		return nil, "stdin", fmt.Errorf("reading stdin: %w", err)
	}
	if len(data) > spec.MaxSpecSize {
		return nil, "stdin", fmt.Errorf("stdin holds more than %d bytes (1 MiB), the limit for a spec", spec.MaxSpecSize)
	}
	return data, "stdin", nil
}

// readSpecFile reads a spec file of at most spec.MaxSpecSize bytes. Devices
// and pipes are allowed (-f /dev/stdin, -f <(envsubst < web.yaml)) but read
// no further than the limit, so -f /dev/zero fails instead of eating memory,
// and the file is opened non-blocking so a FIFO without a writer cannot hang
// the command; a read still blocked when ctx ends (Ctrl-C) is cut off.
func readSpecFile(ctx context.Context, path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory: pass the spec file itself, e.g. -f %s", path, filepath.Join(path, "web.yaml"))
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	data, err := io.ReadAll(io.LimitReader(f, spec.MaxSpecSize+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading %s: %w", path, ctx.Err())
		}
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > spec.MaxSpecSize {
		return nil, fmt.Errorf("%s is larger than %d bytes (1 MiB), the limit for a spec: pass the service spec file itself", path, spec.MaxSpecSize)
	}
	return data, nil
}

// pullFailed says what to do when deploy's pull of ref failed with err.
func pullFailed(err error, ref string) error {
	var te *toolError
	if errors.As(err, &te) && strings.HasPrefix(te.text, "permission denied") {
		// Refused by scope, mode or policy: an import would be refused
		// too, but the deploy itself may be allowed.
		return fmt.Errorf("%w\nnothing was deployed; if the image is already in the server's cache (gantry image ls), deploy with --pull never; else ask someone allowed to pull it: gantry image pull %s", err, ref)
	}
	return fmt.Errorf("%w\nnothing was deployed; import a local image with: gantry image import FILE (then deploy with --pull never)", err)
}

// ensureImage pulls the image per the --pull policy.
func (c *deployCmd) ensureImage(ctx context.Context, cl *client, ref string) error {
	if c.pull == "never" {
		return nil
	}
	if c.pull == "missing" {
		var list api.ImageList
		if err := cl.call(ctx, api.ToolListImages, struct{}{}, &list); err != nil {
			return err
		}
		want := normalizeRef(ref)
		for _, img := range list.Images {
			if normalizeRef(img.Ref) == want {
				return nil
			}
		}
	}
	img, err := pullWithProgress(ctx, c.app, cl, ref)
	if err != nil {
		return pullFailed(err, ref)
	}
	fmt.Fprintf(c.app.stdout, "pulled %s (%s, %s)\n", img.Ref, shortDigest(img.Digest), humanBytes(img.Size))
	return nil
}

// normalizeRef expands an image reference the way registries do, so that
// "busybox" and "docker.io/library/busybox:latest" compare equal.
func normalizeRef(ref string) string {
	name, digest, _ := strings.Cut(ref, "@")
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	domain, rest, found := strings.Cut(name, "/")
	if !found || (!strings.ContainsAny(domain, ".:") && domain != "localhost") {
		domain, rest = "docker.io", name
		if !strings.Contains(rest, "/") {
			rest = "library/" + rest
		}
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	out := domain + "/" + rest
	if tag != "" {
		out += ":" + tag
	}
	if digest != "" {
		out += "@" + digest
	}
	return out
}
