package api

// ToolCancelDeploy is the name of the tool that cancels a rollout in
// progress.
const ToolCancelDeploy = "cancel_deploy"

// Rollout outcomes: how a deploy that waited ended.
const (
	RolloutReady     = "ready"
	RolloutFailed    = "failed"
	RolloutTimedOut  = "timed_out"
	RolloutCancelled = "cancelled"
)

// DefaultRolloutTimeout and MaxRolloutTimeout bound how long a deploy with
// wait waits.
const (
	DefaultRolloutTimeout = "5m"
	MaxRolloutTimeout     = "1h"
)

// ProgressMetaKey is the _meta key of a deploy's progress notifications;
// its value is a RolloutProgress.
const ProgressMetaKey = "gantry.dev/rollout"

// RolloutProgress is where a rollout stands: sent in the _meta of each
// progress notification of a deploy with wait.
type RolloutProgress struct {
	Service string `json:"service"`
	Version int    `json:"version" jsonschema:"the spec version being rolled out"`
	// PreviousVersion is the version a cancellation goes back to (0: the
	// deploy created the service, so a cancellation removes it; -1: the
	// deploy made no new version and a cancellation only stops waiting).
	PreviousVersion int `json:"previous_version"`
	Ready           int `json:"ready" jsonschema:"instances of the new version running and ready"`
	Desired         int `json:"desired"`
}

// Rollout is the outcome of a deploy with wait.
type Rollout struct {
	Outcome string `json:"outcome" jsonschema:"ready, failed, timed_out or cancelled"`
	RolloutProgress
	Elapsed string `json:"elapsed" jsonschema:"how long the wait took, e.g. 4.2s"`
	Message string `json:"message" jsonschema:"the outcome in plain language; for failed, the instance, its state and exit reason"`
	// Instance, State, ExitCode and Reason describe the failing instance.
	Instance string `json:"instance,omitempty" jsonschema:"the instance of the new version that failed"`
	State    string `json:"state,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Reverted is set when a cancellation put the previous spec back or
	// removed the new service.
	Reverted *CancelDeployResult `json:"reverted,omitempty" jsonschema:"what the cancellation did to the service"`
}

// CancelDeployInput is the input of cancel_deploy.
type CancelDeployInput struct {
	Name    string `json:"name" jsonschema:"the service name"`
	Version int    `json:"version,omitempty" jsonschema:"cancel only if this spec version is the one rolling out (0: whichever is)"`
	DryRun  bool   `json:"dry_run,omitempty" jsonschema:"true: change nothing and return the plan with a plan ID for apply_plan"`
}

// CancelDeployResult says what cancelling a rollout did.
type CancelDeployResult struct {
	Service string `json:"service"`
	// Cancelled is the spec version whose rollout was cancelled.
	Cancelled int `json:"cancelled_version"`
	// Action is "rollback" (the previous spec is deployed again as a new
	// version) or "remove" (the cancelled deploy created the service).
	Action string `json:"action" jsonschema:"rollback (the previous spec deployed again as a new version) or remove (the cancelled deploy created the service)"`
	// RestoredVersion is the version whose spec is back (0 for a removal);
	// Version is the service's version after the cancellation.
	RestoredVersion int    `json:"restored_version,omitempty"`
	Version         int    `json:"version,omitempty"`
	Message         string `json:"message"`
	Plan            *Plan  `json:"plan,omitempty" jsonschema:"set on a dry run: what the cancellation would do; nothing was changed"`
}
