package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// deployAndWait deploys with wait: the server reports the rollout's
// progress, printed a line at a time, and says how it ended. When ctx ends
// (Ctrl-C) the call is cancelled, which makes the server revert the deploy;
// the command says so and reports the outcome.
func (c *deployCmd) deployAndWait(ctx context.Context, cl *client, name string, data []byte) error {
	w := c.app.stdout
	var (
		mu     sync.Mutex
		last   *api.RolloutProgress
		closed bool // no more lines once the outcome is printed
	)
	var res api.DeployResult
	// The file's text is sent as is, so server-side errors carry its lines.
	in := api.DeployInput{SpecYAML: string(data), Wait: true, Timeout: c.timeout.String()}
	err := cl.callWithProgress(ctx, api.ToolDeploy, in, &res, func(n *progressParams) {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		if p := rolloutProgress(n.Meta); p != nil {
			last = p
		}
		if n.Message != "" {
			fmt.Fprintln(w, n.Message)
		}
	})
	mu.Lock()
	seen := last
	closed = true
	mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return c.cancelled(ctx, cl, name, seen)
		}
		if seen != nil {
			// The deploy was made and its rollout had begun when the
			// connection went.
			return fmt.Errorf("lost the connection while waiting for %s version %d (%w): a server that stopped keeps the deploy and rolls it out when it is back; one still running reverted it, as for a cancelled wait. Check with: gantry status %s (gantry cancel %s reverts a rollout in progress)",
				name, seen.Version, err, name, name)
		}
		return err
	}
	r := res.Rollout
	if r == nil {
		printDeployed(w, res)
		return fmt.Errorf("the server did not wait for the rollout (is it older than this gantry?); follow it with: gantry status %s", res.Service)
	}
	if seen == nil || seen.Ready < r.Ready {
		// Notifications are handled apart from the result, and the last
		// may come after it: say where the rollout ended.
		fmt.Fprintf(w, "%s: %d/%d instances of version %d ready\n", res.Service, r.Ready, r.Desired, r.Version)
	}
	printDeployed(w, res)
	switch r.Outcome {
	case api.RolloutReady:
		fmt.Fprintf(w, "service %s: %d/%d instances running at version %d (%s)\n", res.Service, r.Ready, r.Desired, r.Version, r.Elapsed)
		return nil
	case api.RolloutFailed:
		msg := fmt.Sprintf("%s\nsee its output with: gantry logs %s --instance %s", r.Message, res.Service, r.Instance)
		if r.PreviousVersion >= 0 {
			msg += fmt.Sprintf("\nundo the deploy with: gantry cancel %s", res.Service)
		}
		return errors.New(msg)
	case api.RolloutTimedOut:
		return fmt.Errorf("%s; check with: gantry status %s", r.Message, res.Service)
	default:
		return fmt.Errorf("rollout of %s version %d cancelled: %s", res.Service, r.Version, r.Message)
	}
}

// rolloutProgress decodes the rollout state a progress notification
// carries in its _meta; nil when it has none.
func rolloutProgress(meta map[string]any) *api.RolloutProgress {
	v, ok := meta[api.ProgressMetaKey]
	if !ok {
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var p api.RolloutProgress
	if json.Unmarshal(raw, &p) != nil || p.Version < 1 {
		return nil
	}
	return &p
}

// revertGrace is how long the CLI waits for the server to revert a
// cancelled deploy on its own before asking for it with cancel_deploy.
const revertGrace = 5 * time.Second

// cancelled reports a deploy whose wait was interrupted. The server
// reverts a deploy whose call is cancelled; should the cancellation not
// reach it, cancel_deploy does the same, for this version only.
func (c *deployCmd) cancelled(ctx context.Context, cl *client, name string, p *api.RolloutProgress) error {
	w := c.app.stdout
	if p == nil {
		fmt.Fprintf(w, "cancelling deploy of %s\n", name)
		return fmt.Errorf("deploy of %s interrupted before its rollout started; check with: gantry status %s (gantry cancel %s reverts a rollout in progress)", name, name, name)
	}
	switch {
	case p.PreviousVersion < 0:
		fmt.Fprintf(w, "cancelling deploy of %s: it made no new version, so there is nothing to revert\n", name)
		return fmt.Errorf("stopped waiting for %s version %d; check with: gantry status %s", name, p.Version, name)
	case p.PreviousVersion == 0:
		fmt.Fprintf(w, "cancelling deploy of %s version %d: removing the service\n", name, p.Version)
	default:
		fmt.Fprintf(w, "cancelling deploy of %s version %d: reverting to version %d\n", name, p.Version, p.PreviousVersion)
	}
	bg, stop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer stop()
	st, gone, err := awaitRevert(bg, cl, name, p.Version, revertGrace)
	if err != nil {
		return fmt.Errorf("deploy of %s version %d interrupted, and whether it was reverted is unknown (%v); check with: gantry status %s", name, p.Version, err, name)
	}
	if !gone && st.Version == p.Version {
		var res api.CancelDeployResult
		err := cl.call(bg, api.ToolCancelDeploy, api.CancelDeployInput{Name: name, Version: p.Version}, &res)
		if err != nil {
			return fmt.Errorf("deploy of %s version %d interrupted, but reverting it failed: %w; check with: gantry status %s", name, p.Version, err, name)
		}
		if res.Action == api.ActionRemove {
			gone = true
		}
		st.Version = res.Version
	}
	if gone {
		return fmt.Errorf("deploy of %s version %d cancelled: the service is removed (its instances are stopping)", name, p.Version)
	}
	return fmt.Errorf("deploy of %s version %d cancelled: the spec of version %d is back, as version %d (follow it with: gantry status %s)",
		name, p.Version, p.PreviousVersion, st.Version, name)
}

// awaitRevert polls the service for up to grace until it is no longer at
// version: gone reports a removal.
func awaitRevert(ctx context.Context, cl *client, name string, version int, grace time.Duration) (st api.ServiceStatus, gone bool, err error) {
	deadline := time.Now().Add(grace)
	for {
		var list api.ServiceList
		if err := cl.call(ctx, api.ToolListServices, struct{}{}, &list); err != nil {
			return st, false, err
		}
		found := false
		for _, s := range list.Services {
			if s.Name == name {
				st, found = s, true
			}
		}
		switch {
		case !found || st.Removing:
			return st, true, nil
		case st.Version != version || time.Now().After(deadline):
			return st, false, nil
		}
		select {
		case <-ctx.Done():
			return st, false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
