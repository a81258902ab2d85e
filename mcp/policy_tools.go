package mcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/policy"
)

// needsConfirmation reports whether a call removes a service or lowers its
// replicas: the changes that stop running instances.
func (s *Server) needsConfirmation(ctx context.Context, in policy.Input) bool {
	if dry, _ := in.Args["dry_run"].(bool); dry {
		return false
	}
	switch in.Tool {
	case api.ToolRemoveService:
		return true
	case api.ToolScaleService:
		want, ok := in.Args["replicas"].(float64)
		if !ok || in.Service == "" || s.over.backend == nil {
			return false
		}
		_, have, found := s.over.backend.ServiceInfo(ctx, in.Service)
		return found && int(want) < have
	}
	return false
}

// canElicit reports whether the session's client accepts elicitation
// requests while a call is being served.
func canElicit(ss *sdk.ServerSession) bool {
	if ss == nil {
		return false
	}
	ip := ss.InitializeParams()
	if ip == nil || ip.Capabilities == nil || ip.Capabilities.Elicitation == nil {
		return false
	}
	// From 2026-07-28 a server cannot send requests while serving one.
	return ip.ProtocolVersion != "" && ip.ProtocolVersion < "2026-07-28"
}

// confirmTimeout bounds the wait for the user's answer to a confirmation:
// a client that declares elicitation but never answers would otherwise
// hold the call, and its session, open for good.
var confirmTimeout = 5 * time.Minute

// confirm asks the user, through the client, to confirm a destructive call.
// It returns "" when the call may run (confirmed, or the client cannot be
// asked), else the tool error to answer with. No answer within
// confirmTimeout is a refusal.
func confirm(ctx context.Context, r *sdk.CallToolRequest, tool string, in policy.Input) string {
	if !canElicit(r.Session) {
		return ""
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	defer cancel()
	what := fmt.Sprintf("remove service %q and stop all its instances", in.Service)
	if tool == api.ToolScaleService {
		what = fmt.Sprintf("scale service %q down to %v replicas, stopping instances", in.Service, in.Args["replicas"])
	}
	res, err := r.Session.Elicit(ctx, &sdk.ElicitParams{
		Message:         fmt.Sprintf("Gantry: %s? This is destructive.", what),
		RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}},
	})
	switch {
	case err != nil && parent.Err() == nil && ctx.Err() != nil:
		return fmt.Sprintf("%s needs the user's confirmation, and none came within %s: the call did not run; call it again when the user can answer", tool, confirmTimeout)
	case err != nil:
		return fmt.Sprintf("%s needs the user's confirmation, but asking failed (%v): the call did not run; retry, or ask whoever runs the server to start it with --confirm-destructive=false", tool, err)
	case res.Action == "accept":
		return ""
	case res.Action == "decline":
		return fmt.Sprintf("declined by the user: %s did not run", tool)
	}
	return fmt.Sprintf("declined by the user (the confirmation was cancelled): %s did not run", tool)
}

var approvalID = regexp.MustCompile(`^apr-[0-9a-f]{8,32}$`)

var approvalStates = []string{api.ApprovalPending, api.ApprovalApproved, api.ApprovalRejected, api.ApprovalUsed, api.ApprovalExpired, "all"}

func (s *Server) listApprovals(ctx context.Context, _ *sdk.CallToolRequest, in api.ListApprovalsInput) (api.ApprovalList, string, error) {
	st := in.State
	if st == "" {
		st = api.ApprovalPending
	}
	valid := false
	for _, v := range approvalStates {
		valid = valid || v == st
	}
	if !valid {
		return api.ApprovalList{}, "", invalidf("invalid state %s: use one of %s", quote(in.State), strings.Join(approvalStates, ", "))
	}
	if st == "all" {
		st = ""
	}
	list, err := s.over.backend.ListApprovals(ctx, st)
	if err != nil {
		return api.ApprovalList{}, "", describe(api.ToolListApprovals, err, errorHint{notFound: "retry"})
	}
	if list == nil {
		list = []api.Approval{}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d approval%s", len(list), plural(len(list)))
	for _, a := range list {
		fmt.Fprintf(&b, "\n%s %s %s by %s (rule %s), expires %s", a.ID, a.State, a.Tool, a.Principal, a.Rule, a.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	return api.ApprovalList{Approvals: list}, b.String(), nil
}

func (s *Server) decide(ctx context.Context, tool string, in api.DecideApprovalInput, approve bool) (api.Approval, string, error) {
	if !approvalID.MatchString(in.ID) {
		return api.Approval{}, "", invalidf("invalid approval ID %s: pass the ID from list_approvals (gantry approvals), e.g. \"apr-1a2b3c4d5e6f\"", quote(in.ID))
	}
	if len(in.Reason) > 512 {
		return api.Approval{}, "", invalidf("reason is %d bytes: at most 512", len(in.Reason))
	}
	if in.DryRun {
		return s.dryRunDecide(ctx, tool, in.ID, approve)
	}
	a, err := s.over.backend.DecideApproval(ctx, in.ID, approve, in.Reason)
	if err != nil {
		return api.Approval{}, "", describe(tool, err, errorHint{subject: "approval " + in.ID, notFound: "list approvals with list_approvals (gantry approvals)"})
	}
	if a == nil {
		return api.Approval{}, "", errors.New("the cluster returned no approval")
	}
	if approve {
		return *a, fmt.Sprintf("approval %s approved: %s may now repeat the same %s call once with approval_id %q, until %s",
			a.ID, a.Principal, a.Tool, a.ID, a.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")), nil
	}
	return *a, fmt.Sprintf("approval %s rejected: the %s call by %s will not run", a.ID, a.Tool, a.Principal), nil
}

func (s *Server) approve(ctx context.Context, _ *sdk.CallToolRequest, in api.DecideApprovalInput) (api.Approval, string, error) {
	return s.decide(ctx, api.ToolApprove, in, true)
}

func (s *Server) reject(ctx context.Context, _ *sdk.CallToolRequest, in api.DecideApprovalInput) (api.Approval, string, error) {
	return s.decide(ctx, api.ToolReject, in, false)
}
