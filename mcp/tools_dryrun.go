package mcp

import (
	"context"
	"errors"
	"fmt"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
)

// dryRunNode plans a drain or an eligibility change and keeps the plan for
// apply_plan.
func (s *Server) dryRunNode(ctx context.Context, tool string, req PlanRequest) (api.NodeSchedulingResult, string, error) {
	if s.plan == nil {
		return api.NodeSchedulingResult{}, "", &toolError{msg: fmt.Sprintf("%s: this server does not support dry runs (no planner configured): call it without dry_run", tool), cat: errdefs.ErrInvalid}
	}
	p, err := s.plan.planner.Plan(ctx, req)
	if err != nil {
		return api.NodeSchedulingResult{}, "", describe(tool, err, errorHint{notFound: "list nodes with list_nodes"})
	}
	if p == nil {
		return api.NodeSchedulingResult{}, "", errors.New("the cluster returned no plan")
	}
	stored := s.plan.store.put(req, *p)
	text := fmt.Sprintf("dry run, nothing changed. %s. Apply it with apply_plan {\"plan_id\": %q} before %s while the node and its instances are unchanged.",
		stored.Summary, stored.ID, stored.ExpiresAt.Format("15:04:05 MST"))
	res := api.NodeSchedulingResult{Node: req.Node, Eligible: req.Kind == PlanEligibility && req.Eligible,
		Draining: req.Kind == PlanDrain, Stopped: len(stored.Stop), Message: stored.Summary, Plan: &stored}
	return res, text, nil
}
