package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

var _ mcp.Oversight = (*Backend)(nil)

// ServiceInfo implements mcp.Oversight.
func (b *Backend) ServiceInfo(_ context.Context, name string) (map[string]string, int, bool) {
	svc, err := b.Store.Service(name)
	if err != nil || svc == nil {
		return nil, 0, false
	}
	return svc.Spec.Labels, svc.Spec.Replicas, true
}

// QueueApproval implements mcp.Oversight.
func (b *Backend) QueueApproval(ctx context.Context, a api.Approval, argsHash string, ttl time.Duration) (*api.Approval, error) {
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("queue approval: %w", err)
	}
	id := "apr-" + hex.EncodeToString(idb[:])
	var args []byte
	if len(a.Arguments) > 0 {
		args, _ = json.Marshal(a.Arguments)
	}
	if _, err := b.Store.Apply(ctx, state.PutApproval{TTL: ttl, Approval: state.Approval{
		ID: id, Principal: a.Principal, Tool: a.Tool, ArgsHash: argsHash, Arguments: args, Rule: a.Rule, Reason: a.Reason,
	}}); err != nil {
		return nil, fmt.Errorf("queue approval for %s: %w", a.Tool, err)
	}
	return b.approval(id)
}

// UseApproval implements mcp.Oversight.
func (b *Backend) UseApproval(ctx context.Context, id, principal, tool, argsHash string) error {
	_, err := b.Store.Apply(ctx, state.UseApproval{ID: id, Principal: principal, Tool: tool, ArgsHash: argsHash})
	return err
}

// ListApprovals implements mcp.Oversight.
func (b *Backend) ListApprovals(_ context.Context, st string) ([]api.Approval, error) {
	now := time.Now()
	rows := b.Store.Approvals(st, now)
	out := make([]api.Approval, len(rows))
	for i, a := range rows {
		out[i] = apiApproval(a, now)
	}
	return out, nil
}

// DecideApproval implements mcp.Oversight: the decider is the caller.
func (b *Backend) DecideApproval(ctx context.Context, id string, approve bool, reason string) (*api.Approval, error) {
	by := caller(ctx)
	if by == "" {
		by = "unknown"
	}
	if _, err := b.Store.Apply(ctx, state.DecideApproval{ID: id, Approve: approve, By: by, Reason: reason}); err != nil {
		return nil, err
	}
	return b.approval(id)
}

func (b *Backend) approval(id string) (*api.Approval, error) {
	a, err := b.Store.Approval(id)
	if err != nil {
		return nil, err
	}
	out := apiApproval(a, time.Now())
	return &out, nil
}

func apiApproval(a *state.Approval, now time.Time) api.Approval {
	out := api.Approval{ID: a.ID, State: a.StateAt(now), Principal: a.Principal, Tool: a.Tool, Rule: a.Rule, Reason: a.Reason,
		CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt, DecidedBy: a.DecidedBy, DecisionReason: a.DecisionReason}
	if len(a.Arguments) > 0 {
		_ = json.Unmarshal(a.Arguments, &out.Arguments)
	}
	if !a.DecidedAt.IsZero() {
		t := a.DecidedAt
		out.DecidedAt = &t
	}
	if !a.UsedAt.IsZero() {
		t := a.UsedAt
		out.UsedAt = &t
	}
	return out
}
