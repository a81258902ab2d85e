package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/spec"
	"github.com/gantry-dev/gantry/state"
)

var _ mcp.Rollouts = (*Backend)(nil)

// RevertRollout cancels the rollout of version of service name. Version 1
// was the service's first: the service is removed. A later version is
// replaced by the spec of version-1 (with today's replica count), stored as
// a new version whose history entry carries cause, so the controller rolls
// the instances back the way it rolls any deploy. Both write a
// "DeployCancelled" event. The write is conditional on the record read, so
// a service that moved on meanwhile is never reverted; that case, and a
// service no longer at version, fail with errdefs.ErrConflict, and so does
// a version that is itself the revert of a cancelled deploy (reverting it
// would deploy the cancelled spec again).
func (b *Backend) RevertRollout(ctx context.Context, name string, version int, cause string) (*api.CancelDeployResult, error) {
	for attempt := 0; ; attempt++ {
		cur, err := b.Store.Service(name)
		if err != nil {
			return nil, err
		}
		switch {
		case cur.Removing:
			return nil, removingErr(name)
		case cur.Version != version:
			return nil, errdefs.WithHint(fmt.Errorf("service %q is at version %d, not %d: the rollout of version %d is already over (cancelled or replaced): %w",
				name, cur.Version, version, version, errdefs.ErrConflict), "check the service with get_service; go back further with rollback_service")
		}
		if h, err := b.Store.SpecAt(name, version); err == nil && mcp.IsCancelCause(h.Cause) {
			return nil, errdefs.WithHint(fmt.Errorf("%s: %w", mcp.RevertOfCancelMessage(name, version, h.Cause), errdefs.ErrConflict),
				"check the service with get_service")
		}
		now := time.Now().UTC()
		res := &api.CancelDeployResult{Service: name, Cancelled: version}
		rec := *cur
		var put state.PutService
		if version == 1 {
			rec.Removing = true
			put = state.PutService{Service: rec, ExpectModifyIndex: cur.ModifyIndex}
			res.Action = api.ActionRemove
			res.Message = fmt.Sprintf("%s: service %s is removed, as version 1 created it; its instances are stopping", cause, name)
		} else {
			prev, err := b.Store.SpecAt(name, version-1)
			if err != nil {
				return nil, err
			}
			s := prev.Spec
			s.Replicas = cur.Spec.Replicas // a revert restores the spec, not the scale
			if len(spec.Changes(&cur.Spec, &s)) == 0 {
				return nil, errdefs.WithHint(fmt.Errorf("version %d of service %q has the same spec as version %d (a restart): there is no earlier spec to go back to: %w",
					version, name, version-1, errdefs.ErrConflict), "let the restart finish, or deploy the spec you want")
			}
			rec.Spec, rec.UpdatedAt = s, now
			put = state.PutService{Service: rec, ExpectModifyIndex: cur.ModifyIndex, Cause: cause}
			res.Action, res.RestoredVersion, res.Version = api.ActionRollback, version-1, version+1
			res.Message = fmt.Sprintf("%s: the spec of version %d is deployed again as version %d", cause, version-1, version+1)
		}
		ev := state.Event{Time: now, Service: name, Type: "DeployCancelled", Message: res.Message}
		_, err = b.Store.Apply(ctx, put, state.AppendEvent{Event: ev})
		if errdefs.IsConflict(err) && attempt < 3 {
			continue // changed meanwhile: read again; a version change ends the loop above
		}
		if err != nil {
			return nil, err
		}
		return res, nil
	}
}
