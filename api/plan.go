package api

import "time"

// Tool names of the plan and lifecycle tools.
const (
	ToolApplyPlan       = "apply_plan"
	ToolServiceHistory  = "service_history"
	ToolRollbackService = "rollback_service"
	ToolRestartService  = "restart_service"
	ToolListEvents      = "list_events"
	ToolExplain         = "explain_instance"
)

// Plan actions: what applying a plan does.
const (
	ActionCreate   = "create"
	ActionUpdate   = "update"
	ActionScale    = "scale"
	ActionRemove   = "remove"
	ActionRestart  = "restart"
	ActionRollback = "rollback"
	ActionNone     = "none"
)

// Plan is what a mutating call would do, computed without changing
// anything. Apply it with apply_plan and its ID while the service is
// unchanged.
type Plan struct {
	ID      string   `json:"id" jsonschema:"the plan ID to pass to apply_plan"`
	Action  string   `json:"action" jsonschema:"create, update, scale, remove, restart, rollback, drain, set_eligibility or none"`
	Service string   `json:"service"`
	Node    string   `json:"node,omitempty" jsonschema:"the node a drain or eligibility plan is about (service is empty then)"`
	Changes []string `json:"changes,omitempty" jsonschema:"spec field paths that change, e.g. image or env.GREETING"`
	// FromVersion and ToVersion are the service's spec versions before and
	// after (0: the service does not exist).
	FromVersion int               `json:"from_version"`
	ToVersion   int               `json:"to_version"`
	Create      []PlannedInstance `json:"create" jsonschema:"instances that will be created in new slots"`
	Replace     []PlannedInstance `json:"replace" jsonschema:"instances that will be replaced, one at a time, each only once the others are ready"`
	Stop        []PlannedInstance `json:"stop" jsonschema:"instances that will be stopped and not replaced"`
	Pending     string            `json:"pending,omitempty" jsonschema:"why some instances could not be placed now (they would stay pending)"`
	Summary     string            `json:"summary" jsonschema:"the plan in plain language"`
	Index       uint64            `json:"index" jsonschema:"the state index the plan was computed at"`
	Base        uint64            `json:"base_modify_index" jsonschema:"the service's modify index the plan is based on (0: the service did not exist); apply_plan refuses the plan once it has changed"`
	ExpiresAt   time.Time         `json:"expires_at"`
}

// PlannedInstance is one instance a plan creates, replaces or stops.
type PlannedInstance struct {
	ID          string `json:"id,omitempty" jsonschema:"the existing instance (empty for one not created yet)"`
	Service     string `json:"service,omitempty" jsonschema:"the instance's service, set in node plans (drain, eligibility), which can concern several"`
	Slot        int    `json:"slot"`
	Node        string `json:"node,omitempty"`
	FromVersion int    `json:"from_version,omitempty"`
	ToVersion   int    `json:"to_version,omitempty"`
}

// ApplyPlanInput is the input of apply_plan.
type ApplyPlanInput struct {
	PlanID string `json:"plan_id" jsonschema:"the ID of a plan returned by a dry run (dry_run true)"`
}

// ApplyPlanResult is the output of apply_plan.
type ApplyPlanResult struct {
	PlanID  string `json:"plan_id"`
	Action  string `json:"action"`
	Service string `json:"service"`
	Version int    `json:"version" jsonschema:"the service's spec version after the change"`
	Index   uint64 `json:"index" jsonschema:"the state index of the change"`
	Message string `json:"message"`
}

// RemoveInput is the input of remove_service.
type RemoveInput struct {
	Name   string `json:"name" jsonschema:"the service name"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan (instances to stop) with a plan ID for apply_plan"`
}

// RestartInput is the input of restart_service.
type RestartInput struct {
	Name    string `json:"name" jsonschema:"the service name"`
	DryRun  bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan with a plan ID for apply_plan"`
	Wait    bool   `json:"wait,omitempty" jsonschema:"true: return only when every instance runs the new version and is ready, one failed, or the timeout passed, with progress notifications meanwhile"`
	Timeout string `json:"timeout,omitempty" jsonschema:"with wait: how long to wait, e.g. 90s or 10m (default 5m, at most 1h)"`
}

// RollbackInput is the input of rollback_service.
type RollbackInput struct {
	Name    string `json:"name" jsonschema:"the service name"`
	Version int    `json:"version" jsonschema:"the spec version to go back to (see service_history)"`
	DryRun  bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan with a plan ID for apply_plan"`
	Wait    bool   `json:"wait,omitempty" jsonschema:"true: return only when the rollout is ready, failed or timed out, with progress notifications meanwhile; cancelling the call reverts the rollback"`
	Timeout string `json:"timeout,omitempty" jsonschema:"with wait: how long to wait, e.g. 90s or 10m (default 5m, at most 1h)"`
}

// ChangeResult is the output of restart_service and rollback_service: the
// change made, or on a dry run the plan.
type ChangeResult struct {
	Service string   `json:"service"`
	Action  string   `json:"action"`
	Version int      `json:"version" jsonschema:"the service's spec version after the change (on a dry run: after applying the plan)"`
	Index   uint64   `json:"index,omitempty" jsonschema:"the state index of the change (0 on a dry run)"`
	Message string   `json:"message"`
	Plan    *Plan    `json:"plan,omitempty" jsonschema:"set on a dry run: what the change would do; nothing was changed"`
	Rollout *Rollout `json:"rollout,omitempty" jsonschema:"set with wait: how the rollout ended"`
}

// History is the output of service_history.
type History struct {
	Service  string        `json:"service"`
	Current  int           `json:"current" jsonschema:"the version the service runs now"`
	Versions []SpecVersion `json:"versions" jsonschema:"the versions kept (the last 20), oldest first"`
}

// SpecVersion is one version of a service's spec.
type SpecVersion struct {
	Version int            `json:"version"`
	Cause   string         `json:"cause" jsonschema:"deploy (a spec change), rollback to version N, restart (same spec, instances replaced) or deploy of version N cancelled (a cancelled rollout reverted)"`
	Time    time.Time      `json:"time"`
	Image   string         `json:"image"`
	Changes []string       `json:"changes,omitempty" jsonschema:"fields changed from the previous version kept"`
	Spec    map[string]any `json:"spec"`
}
