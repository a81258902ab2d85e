package api

import "time"

// Tool names of the approval tools: list_approvals needs scope read, the
// decisions need admin.
const (
	ToolListApprovals = "list_approvals"
	ToolApprove       = "approve"
	ToolReject        = "reject"
)

// ApprovalIDArg is the argument a caller adds to a tool call that policy
// held for approval, once a human has approved it: the same call, with the
// same arguments, plus "approval_id": "<id>".
const ApprovalIDArg = "approval_id"

// Approval states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalUsed     = "used"
	ApprovalExpired  = "expired"
)

// Approval is a tool call held by policy for a human's decision.
type Approval struct {
	ID             string         `json:"id"`
	State          string         `json:"state" jsonschema:"pending, approved, rejected, used or expired"`
	Principal      string         `json:"principal" jsonschema:"who made the call"`
	Tool           string         `json:"tool"`
	Arguments      map[string]any `json:"arguments,omitempty" jsonschema:"the call's arguments, with secrets redacted"`
	Rule           string         `json:"rule,omitempty" jsonschema:"the policy rule that asked for approval"`
	Reason         string         `json:"reason,omitempty"`
	CreatedAt      time.Time      `json:"created_at"`
	ExpiresAt      time.Time      `json:"expires_at" jsonschema:"after this the approval can be neither decided nor used"`
	DecidedBy      string         `json:"decided_by,omitempty"`
	DecidedAt      *time.Time     `json:"decided_at,omitempty"`
	DecisionReason string         `json:"decision_reason,omitempty"`
	UsedAt         *time.Time     `json:"used_at,omitempty"`
	DryRun         bool           `json:"dry_run,omitempty" jsonschema:"true on a dry run of approve or reject: this is the held call that would be decided; nothing was decided"`
}

// ListApprovalsInput filters list_approvals.
type ListApprovalsInput struct {
	State string `json:"state,omitempty" jsonschema:"only approvals in this state: pending (the default), approved, rejected, used, expired or all"`
}

// ApprovalList is the output of list_approvals.
type ApprovalList struct {
	Approvals []Approval `json:"approvals" jsonschema:"oldest first"`
}

// DecideApprovalInput is the input of approve and reject.
type DecideApprovalInput struct {
	ID     string `json:"id" jsonschema:"the approval ID from list_approvals"`
	Reason string `json:"reason,omitempty" jsonschema:"why, for the audit log (at most 512 characters)"`
	DryRun bool   `json:"dry_run,omitempty" jsonschema:"true: decide nothing; return the held call (tool, principal, redacted arguments) that would be approved or rejected, refused as the real call would be when it is not pending, expired or your own"`
}

// PendingApproval is the structured content of a call that policy held for
// approval: the call did not run.
type PendingApproval struct {
	Status     string    `json:"status" jsonschema:"always pending_approval: the call did not run"`
	ApprovalID string    `json:"approval_id"`
	Tool       string    `json:"tool"`
	Rule       string    `json:"rule" jsonschema:"the policy rule that asked for approval"`
	Reason     string    `json:"reason"`
	ExpiresAt  time.Time `json:"expires_at"`
	HowTo      string    `json:"how_to" jsonschema:"how a human approves, and how to run the call once approved"`
}
