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
	// poll is the interval between status checks while waiting.
	poll time.Duration
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
	c := &deployCmd{app: a, fs: newFlagSet("deploy"), poll: 500 * time.Millisecond}
	c.fs.StringVar(&c.file, "f", "", "the service spec `FILE` (YAML or JSON)")
	c.fs.BoolVar(&c.detach, "detach", false, "return after the deploy is accepted instead of waiting for the rollout")
	c.fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "how long to wait for the rollout")
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
	case c.timeout <= 0:
		return usagef("deploy", "--timeout: expected a positive duration such as 5m, got %s", c.timeout)
	case c.pull != "missing" && c.pull != "always" && c.pull != "never":
		return usagef("deploy", "--pull: expected missing, always or never, got %q", c.pull)
	}
	data, err := readSpecFile(ctx, c.file)
	if err != nil {
		return fmt.Errorf("cannot read the spec: %w", err)
	}
	svc, err := spec.Parse(data, c.file)
	if err != nil {
		return fmt.Errorf("%s is invalid; nothing was deployed:\n%w", c.file, err)
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
	var res api.DeployResult
	// The file's text is sent as is, so server-side errors carry its lines.
	if err := cl.call(ctx, api.ToolDeploy, api.DeployInput{SpecYAML: string(data)}, &res); err != nil {
		return err
	}
	w := c.app.stdout
	switch {
	case res.Created:
		fmt.Fprintf(w, "service %s created (version %d, %d replicas)\n", res.Service, res.Version, res.Desired)
	case res.Changed && len(res.Changes) > 0:
		fmt.Fprintf(w, "service %s updated to version %d: changed %s\n", res.Service, res.Version, strings.Join(res.Changes, ", "))
	case res.Changed:
		fmt.Fprintf(w, "service %s updated (version %d, %d replicas)\n", res.Service, res.Version, res.Desired)
	default:
		fmt.Fprintf(w, "service %s unchanged (version %d)\n", res.Service, res.Version)
	}
	if c.detach {
		fmt.Fprintf(w, "follow the rollout with: gantry status %s\n", res.Service)
		return nil
	}
	return c.wait(ctx, cl, res)
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
		return fmt.Errorf("%w\nnothing was deployed; import a local image with: gantry image import FILE (then deploy with --pull never)", err)
	}
	fmt.Fprintf(c.app.stdout, "pulled %s (%s, %s)\n", img.Ref, shortDigest(img.Digest), humanBytes(img.Size))
	return nil
}

// wait polls the service until the new version runs on every replica, an
// instance of it fails, or the timeout passes.
func (c *deployCmd) wait(ctx context.Context, cl *client, res api.DeployResult) error {
	w := c.app.stdout
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	seen := map[string]string{}
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	var last api.ServiceStatus
	// Scheduling problems are events, not instance states: show each new
	// one, or a deploy nothing can place waits silently until the timeout.
	pendingSeen := map[string]bool{}
	pending := ""
	for {
		var st api.ServiceStatus
		err := cl.call(ctx, api.ToolGetService, api.NameInput{Name: res.Service}, &st)
		switch {
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("waiting for %s: %w", res.Service, err)
		case err == nil:
			last = st
			for _, in := range st.Instances {
				state := in.State
				if in.State == "running" && in.Healthy {
					state += " (healthy)"
				}
				if seen[in.ID] != state {
					seen[in.ID] = state
					fmt.Fprintf(w, "  %s  version %d  %s\n", in.ID, in.SpecVersion, state)
				}
			}
			if p := newPending(st.Events, pendingSeen); p != "" {
				pending = p
				fmt.Fprintf(w, "  waiting: %s\n", p)
			}
			done, ferr := rollout(st, res.Version)
			if ferr != nil {
				return ferr
			}
			if done {
				fmt.Fprintf(w, "service %s: %d/%d instances running at version %d (%s)\n",
					res.Service, st.Desired, st.Desired, res.Version, time.Since(start).Round(100*time.Millisecond))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why := ""
				if pending != "" {
					why = "; last scheduling problem: " + pending
				}
				return fmt.Errorf("timed out after %s waiting for %s: %s%s; check with: gantry status %s",
					c.timeout, res.Service, progressSummary(last, res.Version), why, res.Service)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// rollout reports whether every replica runs version, or why it cannot.
func rollout(st api.ServiceStatus, version int) (bool, error) {
	ready, old := 0, 0
	for _, in := range st.Instances {
		switch {
		case in.SpecVersion == version && (in.State == "failed" || in.State == "backoff" || in.State == "crashloop"):
			return false, instanceFailure(st.Name, in)
		case in.SpecVersion == version && in.State == "running" && in.Healthy:
			ready++ // the server marks an instance without a check healthy once it runs
		case in.SpecVersion < version && in.State != "stopped" && in.State != "exited" && in.State != "failed":
			old++
		}
	}
	return st.Version >= version && ready >= st.Desired && old == 0, nil
}

// newPending returns the reason why instances cannot be placed when the
// newest placement event is a "Pending" one (no "Scheduled" since) and its
// message is not in seen yet, adding it to seen; "" otherwise.
func newPending(events []api.Event, seen map[string]bool) string {
	var newest *api.Event
	for i, ev := range events {
		if (ev.Type == "Pending" || ev.Type == "Scheduled") && (newest == nil || !ev.Time.Before(newest.Time)) {
			newest = &events[i]
		}
	}
	if newest == nil || newest.Type != "Pending" || seen[newest.Message] {
		return ""
	}
	seen[newest.Message] = true
	return newest.Message
}

func instanceFailure(service string, in api.InstanceStatus) error {
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s is %s", in.ID, in.State)
	if in.ExitCode != nil {
		fmt.Fprintf(&b, ": exit code %d", *in.ExitCode)
		if in.Reason != "" {
			fmt.Fprintf(&b, " (%s)", in.Reason)
		}
	}
	if in.Message != "" {
		fmt.Fprintf(&b, ": %s", in.Message)
	}
	if in.Restarts > 0 {
		fmt.Fprintf(&b, " after %d restarts", in.Restarts)
	}
	fmt.Fprintf(&b, "\nsee its output with: gantry logs %s --instance %s", service, in.ID)
	return errors.New(b.String())
}

func progressSummary(st api.ServiceStatus, version int) string {
	ready := 0
	var waiting []string
	for _, in := range st.Instances {
		if in.SpecVersion == version && in.State == "running" {
			ready++
			continue
		}
		waiting = append(waiting, fmt.Sprintf("%s %s", in.ID, in.State))
	}
	s := fmt.Sprintf("%d/%d instances running at version %d", ready, st.Desired, version)
	if len(waiting) > 0 {
		s += " (" + strings.Join(waiting, ", ") + ")"
	}
	return s
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
