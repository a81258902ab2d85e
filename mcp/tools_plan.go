package mcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// Histories is what service_history needs from the cluster.
type Histories interface {
	History(ctx context.Context, name string) (*api.History, error)
}

// planTools holds the plan tools' dependencies; nil in a Server without a
// Planner.
type planTools struct {
	planner Planner
	history Histories // nil: no service_history tool
	store   *planStore
}

var planID = regexp.MustCompile(`^plan-[0-9a-f]{24}$`)

// registerPlanTools adds apply_plan, restart_service, rollback_service and
// service_history when cfg has a Planner.
func registerPlanTools(s *Server, cfg Config) {
	if cfg.Plans == nil {
		return
	}
	s.plan = &planTools{planner: cfg.Plans, history: cfg.History, store: newPlanStore(nil)}
	addTool(s, &sdk.Tool{
		Name: api.ToolApplyPlan,
		Description: "Apply a plan made by a dry run (deploy, scale_service, remove_service, restart_service, rollback_service, drain_node or set_node_eligibility with dry_run true). " +
			"The plan is applied only if the service (or the node and its instances) is still exactly as the plan saw it; otherwise it is refused with what changed, and you should plan again. " +
			"Plans expire after 15 minutes and are used once.",
		Annotations: mutating("Apply plan", true, false),
	}, s.applyPlan)
	addTool(s, &sdk.Tool{
		Name: api.ToolRestartService,
		Description: "Restart a service's instances without changing its spec: the version is bumped and instances are replaced one at a time, " +
			"each only once the others are ready (health-gated). With dry_run true nothing changes and the plan is returned with a plan ID for apply_plan.",
		Annotations: &sdk.ToolAnnotations{Title: "Restart service", DestructiveHint: boolPtr(true), OpenWorldHint: boolPtr(false)},
	}, s.restartService)
	addTool(s, &sdk.Tool{
		Name: api.ToolRollbackService,
		Description: "Deploy an earlier spec version of a service again (as a new version; the replica count stays as it is now). " +
			"List the versions with service_history. With dry_run true nothing changes and the plan is returned with a plan ID for apply_plan.",
		Annotations: &sdk.ToolAnnotations{Title: "Roll back service", DestructiveHint: boolPtr(true), OpenWorldHint: boolPtr(false)},
	}, s.rollbackService)
	if cfg.History != nil {
		addTool(s, &sdk.Tool{
			Name:        api.ToolServiceHistory,
			Description: "List the spec versions of a service (the last 20), oldest first, with what changed in each, its cause (deploy or restart) and the full spec.",
			Annotations: readOnly("Service history"),
		}, s.serviceHistory)
	}
}

// dryRun plans req and keeps the plan for apply_plan.
func (s *Server) dryRun(ctx context.Context, tool string, req PlanRequest) (*api.Plan, string, error) {
	if s.plan == nil {
		return nil, "", &toolError{msg: fmt.Sprintf("%s: this server does not support dry runs (no planner configured): call it without dry_run", tool), cat: errdefs.ErrInvalid}
	}
	p, err := s.plan.planner.Plan(ctx, req)
	if err != nil {
		return nil, "", describe(tool, err, serviceNotFound(req.Service))
	}
	if p == nil {
		return nil, "", errors.New("the cluster returned no plan")
	}
	stored := s.plan.store.put(req, *p)
	text := fmt.Sprintf("dry run, nothing changed. %s. Apply it with apply_plan {\"plan_id\": %q} before %s while the service is unchanged.",
		stored.Summary, stored.ID, stored.ExpiresAt.Format("15:04:05 MST"))
	return &stored, text, nil
}

func (s *Server) dryRunDeploy(ctx context.Context, svc *spec.Service) (api.DeployResult, string, error) {
	if err := svc.Validate(); err != nil {
		return api.DeployResult{}, "", specError(err, false)
	}
	p, text, err := s.dryRun(ctx, api.ToolDeploy, PlanRequest{Kind: PlanDeploy, Service: svc.Name, Spec: svc})
	if err != nil {
		return api.DeployResult{}, "", err
	}
	return api.DeployResult{Service: svc.Name, Version: p.ToVersion, Created: p.Action == api.ActionCreate,
		Changed: p.Action != api.ActionNone, Changes: p.Changes, Desired: svc.Replicas, Message: p.Summary, Plan: p}, text, nil
}

func (s *Server) dryRunScale(ctx context.Context, in api.ScaleInput) (api.ScaleResult, string, error) {
	p, text, err := s.dryRun(ctx, api.ToolScaleService, PlanRequest{Kind: PlanScale, Service: in.Name, Replicas: in.Replicas})
	if err != nil {
		return api.ScaleResult{}, "", err
	}
	prev := in.Replicas - len(p.Create) + len(p.Stop)
	return api.ScaleResult{Service: in.Name, Previous: prev, Desired: in.Replicas, Plan: p}, text, nil
}

func (s *Server) dryRunRemove(ctx context.Context, in api.RemoveInput) (api.RemoveResult, string, error) {
	p, text, err := s.dryRun(ctx, api.ToolRemoveService, PlanRequest{Kind: PlanRemove, Service: in.Name})
	if err != nil {
		return api.RemoveResult{}, "", err
	}
	return api.RemoveResult{Service: in.Name, Stopped: len(p.Stop), Plan: p}, text, nil
}

func (s *Server) applyPlan(ctx context.Context, _ *sdk.CallToolRequest, in api.ApplyPlanInput) (api.ApplyPlanResult, string, error) {
	if in.PlanID == "" || len(in.PlanID) > 64 || !planID.MatchString(in.PlanID) {
		return api.ApplyPlanResult{}, "", invalidf("invalid plan_id %s: plan IDs look like \"plan-\" and 24 hex digits, as returned by a dry run (dry_run true)", quote(in.PlanID))
	}
	sp, err := s.plan.store.get(in.PlanID)
	if err != nil {
		return api.ApplyPlanResult{}, "", describe(api.ToolApplyPlan, err, errorHint{notFound: "make a new plan with dry_run true"})
	}
	res, err := s.plan.planner.ApplyPlan(ctx, sp.req, &sp.plan)
	if err != nil {
		return api.ApplyPlanResult{}, "", describe(api.ToolApplyPlan, err, serviceNotFound(sp.req.Service))
	}
	if res == nil {
		return api.ApplyPlanResult{}, "", errors.New("the cluster returned no result")
	}
	s.plan.store.drop(in.PlanID)
	res.PlanID = in.PlanID
	return *res, fmt.Sprintf("plan %s applied: %s", in.PlanID, res.Message), nil
}

// change plans req and, unless dryRun, applies the plan at once.
func (s *Server) change(ctx context.Context, tool string, req PlanRequest, dryRun bool) (api.ChangeResult, string, error) {
	if dryRun {
		p, text, err := s.dryRun(ctx, tool, req)
		if err != nil {
			return api.ChangeResult{}, "", err
		}
		return api.ChangeResult{Service: req.Service, Action: p.Action, Version: p.ToVersion, Message: p.Summary, Plan: p}, text, nil
	}
	p, err := s.plan.planner.Plan(ctx, req)
	if err != nil {
		return api.ChangeResult{}, "", describe(tool, err, serviceNotFound(req.Service))
	}
	if p == nil {
		return api.ChangeResult{}, "", errors.New("the cluster returned no plan")
	}
	res, err := s.plan.planner.ApplyPlan(ctx, req, p)
	if err != nil {
		return api.ChangeResult{}, "", describe(tool, err, serviceNotFound(req.Service))
	}
	if res == nil {
		return api.ChangeResult{}, "", errors.New("the cluster returned no result")
	}
	return api.ChangeResult{Service: res.Service, Action: res.Action, Version: res.Version, Index: res.Index, Message: res.Message},
		fmt.Sprintf("%s (%s)", res.Message, p.Summary), nil
}

func (s *Server) restartService(ctx context.Context, req *sdk.CallToolRequest, in api.RestartInput) (api.ChangeResult, string, error) {
	if err := validateName(in.Name); err != nil {
		return api.ChangeResult{}, "", err
	}
	timeout, err := s.checkWaitArgs(in.Wait, in.Timeout, in.DryRun)
	if err != nil {
		return api.ChangeResult{}, "", err
	}
	if in.Wait { // a restart cannot be reverted: a cancelled wait only stops waiting
		return s.changeAndWait(ctx, req, api.ToolRestartService, PlanRequest{Kind: PlanRestart, Service: in.Name}, timeout, false)
	}
	return s.change(ctx, api.ToolRestartService, PlanRequest{Kind: PlanRestart, Service: in.Name}, in.DryRun)
}

func (s *Server) rollbackService(ctx context.Context, req *sdk.CallToolRequest, in api.RollbackInput) (api.ChangeResult, string, error) {
	if err := validateName(in.Name); err != nil {
		return api.ChangeResult{}, "", err
	}
	if in.Version < 1 {
		return api.ChangeResult{}, "", invalidf("invalid version %d: pass the version to go back to, a whole number from 1 (list them with service_history)", in.Version)
	}
	timeout, err := s.checkWaitArgs(in.Wait, in.Timeout, in.DryRun)
	if err != nil {
		return api.ChangeResult{}, "", err
	}
	if in.Wait {
		return s.changeAndWait(ctx, req, api.ToolRollbackService, PlanRequest{Kind: PlanRollback, Service: in.Name, Version: in.Version}, timeout, true)
	}
	return s.change(ctx, api.ToolRollbackService, PlanRequest{Kind: PlanRollback, Service: in.Name, Version: in.Version}, in.DryRun)
}

func (s *Server) serviceHistory(ctx context.Context, _ *sdk.CallToolRequest, in api.NameInput) (api.History, string, error) {
	if err := validateName(in.Name); err != nil {
		return api.History{}, "", err
	}
	h, err := s.plan.history.History(ctx, in.Name)
	if err != nil {
		return api.History{}, "", describe(api.ToolServiceHistory, err, serviceNotFound(in.Name))
	}
	if h == nil {
		return api.History{}, "", errors.New("the cluster returned no history")
	}
	if h.Versions == nil {
		h.Versions = []api.SpecVersion{}
	}
	text := fmt.Sprintf("service %q runs version %d; %d version%s kept:", h.Service, h.Current, len(h.Versions), plural(len(h.Versions)))
	for _, v := range h.Versions {
		text += fmt.Sprintf("\n- v%d %s %s (%s)", v.Version, v.Time.Format("2006-01-02 15:04:05"), v.Cause, v.Image)
		if len(v.Changes) > 0 {
			text += fmt.Sprintf(" changed: %v", v.Changes)
		}
	}
	return *h, text, nil
}
