package mcp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/policy"
	"github.com/gantry-dev/gantry/spec"
)

// Oversight is what policy and the approval tools need from the cluster.
// The principal making a call is in ctx (PrincipalFromContext).
type Oversight interface {
	// ServiceInfo returns a service's labels and desired replicas; ok is
	// false when there is no such service.
	ServiceInfo(ctx context.Context, name string) (labels map[string]string, replicas int, ok bool)
	// QueueApproval stores a held call (State is ignored) for ttl.
	QueueApproval(ctx context.Context, a api.Approval, argsHash string, ttl time.Duration) (*api.Approval, error)
	// UseApproval consumes an approved approval for exactly this call.
	UseApproval(ctx context.Context, id, principal, tool, argsHash string) error
	ListApprovals(ctx context.Context, state string) ([]api.Approval, error)
	// DecideApproval approves or rejects as the principal in ctx.
	DecideApproval(ctx context.Context, id string, approve bool, reason string) (*api.Approval, error)
}

// DefaultApprovalTTL is how long a held call waits for a decision and,
// once approved, may be run.
const DefaultApprovalTTL = time.Hour

// Audit decisions besides allowed and denied.
const decisionPending = "pending-approval"

// overseer applies the policy to every tool call.
type overseer struct {
	policy    *policy.Policy
	backend   Oversight // nil: no approval queue, labels unknown
	ttl       time.Duration
	confirm   bool     // ask for confirmation of destructive calls by elicitation
	hints     sync.Map // tool name -> *sdk.ToolAnnotations
	planStore func() *planStore
	argsKey   []byte // HMAC key of argsHash
	// serviceOf maps an "instance" argument to its service (nil: unknown).
	serviceOf func(ctx context.Context, instance string) (string, bool)
}

// registerPolicy installs the policy middleware and the approval tools. It
// must be called before registerAuthTools: middleware added later wraps
// earlier middleware, and the policy must run after the scope check.
func registerPolicy(s *Server, cfg Config) {
	o := s.overseer()
	o.policy, o.backend, o.ttl, o.confirm = cfg.Policy, cfg.Oversight, cfg.ApprovalTTL, cfg.ConfirmDestructive
	if o.ttl <= 0 {
		o.ttl = DefaultApprovalTTL
	}
	o.argsKey = cfg.ApprovalKey
	if len(o.argsKey) == 0 {
		// Approvals then hold only until this process stops.
		o.argsKey = make([]byte, 32)
		_, _ = rand.Read(o.argsKey)
	}
	o.planStore = func() *planStore {
		if s.plan == nil {
			return nil
		}
		return s.plan.store
	}
	s.srv.AddReceivingMiddleware(s.policyCalls)
	if o.backend == nil {
		return
	}
	addTool(s, needs(ScopeRead, &sdk.Tool{
		Name: api.ToolListApprovals,
		Description: "List tool calls that the server's policy held for a human's approval (state: pending by default, or approved, rejected, used, expired, all), " +
			"with who made them, the tool, the redacted arguments and the rule. Needs scope read.",
		Annotations: readOnly("List approvals"),
	}), s.listApprovals)
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolApprove,
		Description: "Approve a pending held call by ID, with an optional reason for the audit log. The caller then repeats exactly the same call with approval_id set; " +
			"an approval works once, for the same principal, tool and arguments, until it expires. Nobody can approve their own call. " +
			"With dry_run true nothing is decided: the held call (tool, principal, redacted arguments) is shown, or refused as the real call would be. Needs scope admin.",
		Annotations: mutating("Approve held call", false, false),
	}), s.approve)
	addTool(s, needs(ScopeAdmin, &sdk.Tool{
		Name: api.ToolReject,
		Description: "Reject a pending held call by ID, with an optional reason: it can no longer be run. Nobody can decide their own call. " +
			"With dry_run true nothing is decided: the held call is shown, or refused as the real call would be. Needs scope admin.",
		Annotations: mutating("Reject held call", false, false),
	}), s.reject)
}

// overseer returns s.over, made on first use: tools registered before
// registerPolicy runs are noted too. NewServer runs single-threaded.
func (s *Server) overseer() *overseer {
	if s.over == nil {
		s.over = &overseer{}
	}
	return s.over
}

// noteTool remembers a tool's annotations for the policy.
func (s *Server) noteTool(t *sdk.Tool) {
	s.overseer().hints.Store(t.Name, t.Annotations)
}

func (o *overseer) hint(tool string) (ann *sdk.ToolAnnotations, known bool) {
	v, ok := o.hints.Load(tool)
	if !ok {
		return nil, false
	}
	ann, _ = v.(*sdk.ToolAnnotations)
	return ann, true
}

func (o *overseer) input(ctx context.Context, p Principal, tool string, args map[string]any) policy.Input {
	ann, _ := o.hint(tool)
	in := policy.Input{Principal: p.Name, Tool: tool, Args: args}
	for _, sc := range p.Scopes {
		in.Scopes = append(in.Scopes, string(sc))
	}
	if ann != nil {
		in.ReadOnly = ann.ReadOnlyHint
		in.Destructive = ann.DestructiveHint == nil || *ann.DestructiveHint
	}
	in.Service, _ = args["name"].(string)
	if id, ok := args["instance"].(string); ok && in.Service == "" && o.serviceOf != nil {
		in.Service, _ = o.serviceOf(ctx, id)
	}
	var newLabels map[string]string
	if tool == api.ToolDeploy {
		if svc := specOf(args); svc != nil {
			in.Service, newLabels = svc.Name, svc.Labels
		}
	}
	if in.Service != "" && o.backend != nil {
		if labels, _, ok := o.backend.ServiceInfo(ctx, in.Service); ok {
			in.Labels = labels
		}
	}
	if len(newLabels) > 0 {
		merged := make(map[string]string, len(in.Labels)+len(newLabels))
		for k, v := range in.Labels {
			merged[k] = v
		}
		for k, v := range newLabels {
			merged[k] = v
		}
		in.Labels = merged
	}
	return in
}

// specOf parses a deploy call's spec, or returns nil when it cannot.
func specOf(args map[string]any) *spec.Service {
	var data []byte
	if y, ok := args["spec_yaml"].(string); ok && len(y) <= maxSpecBytes {
		data = []byte(y)
	} else if m, ok := args["spec"].(map[string]any); ok {
		data, _ = json.Marshal(m)
	}
	if len(data) == 0 || len(data) > maxSpecBytes {
		return nil
	}
	svc, err := spec.Parse(data, "spec")
	if err != nil {
		return nil
	}
	return svc
}

// planInput is the change an apply_plan call makes, as the equivalent
// direct tool call, so that rules about scale_service or a service's
// labels cannot be bypassed through a plan.
func (o *overseer) planInput(ctx context.Context, p Principal, args map[string]any) (policy.Input, bool) {
	id, _ := args["plan_id"].(string)
	ps := o.planStore()
	if id == "" || ps == nil {
		return policy.Input{}, false
	}
	sp, err := ps.get(id)
	if err != nil {
		return policy.Input{}, false
	}
	tool := map[string]string{PlanDeploy: api.ToolDeploy, PlanScale: api.ToolScaleService, PlanRemove: api.ToolRemoveService,
		PlanRestart: api.ToolRestartService, PlanRollback: api.ToolRollbackService,
		PlanDrain: api.ToolDrainNode, PlanEligibility: api.ToolSetNodeEligibility}[sp.req.Kind]
	if tool == "" {
		return policy.Input{}, false
	}
	eq := map[string]any{"name": sp.req.Service}
	switch sp.req.Kind {
	case PlanDrain:
		eq = map[string]any{"node": sp.req.Node}
	case PlanEligibility:
		eq = map[string]any{"node": sp.req.Node, "eligible": sp.req.Eligible}
	case PlanScale:
		eq["replicas"] = float64(sp.req.Replicas)
	case PlanRollback:
		eq["version"] = float64(sp.req.Version)
	case PlanDeploy:
		if sp.req.Spec != nil {
			if b, err := json.Marshal(sp.req.Spec); err == nil {
				var m map[string]any
				if json.Unmarshal(b, &m) == nil {
					eq["spec"] = m
				}
			}
		}
	}
	return o.input(ctx, p, tool, eq), true
}

// stricter returns the more restrictive of two decisions.
func stricter(a, b policy.Decision) policy.Decision {
	rank := map[policy.Effect]int{policy.Allow: 0, policy.NeedsApproval: 1, policy.Deny: 2}
	if rank[b.Effect] > rank[a.Effect] || (a.Rule == "" && b.Rule != "" && b.Effect == a.Effect) {
		return b
	}
	return a
}

// splitArgs decodes a call's arguments and removes approval_id from them.
// raw is the arguments without it (nil when unchanged).
func splitArgs(in json.RawMessage) (args map[string]any, approvalID string, raw json.RawMessage, err error) {
	args = map[string]any{}
	if len(in) == 0 || string(in) == "null" {
		return args, "", nil, nil
	}
	if err := json.Unmarshal(in, &args); err != nil {
		return nil, "", nil, err
	}
	v, ok := args[api.ApprovalIDArg]
	if !ok {
		return args, "", nil, nil
	}
	id, isString := v.(string)
	if !isString || id == "" {
		return nil, "", nil, fmt.Errorf("%s must be a non-empty string", api.ApprovalIDArg)
	}
	delete(args, api.ApprovalIDArg)
	raw, err = json.Marshal(args)
	return args, id, raw, err
}

// argsHash identifies a call's arguments: the HMAC-SHA256 under key of
// their canonical JSON (object keys sorted), without approval_id. It is
// kept in the replicated approval record, so it is keyed: a plain hash
// would let anyone who reads approvals test guesses of a held call's
// secret arguments (set_secret's value).
func argsHash(key []byte, args map[string]any) string {
	b, _ := json.Marshal(args)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// policyCalls is receiving middleware, inside guardCalls (so after the
// scope check), that applies the policy, the approval flow and the
// confirmation of destructive calls before the SDK runs the tool.
func (s *Server) policyCalls(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		r, ok := req.(*sdk.CallToolRequest)
		o := s.over
		if method != "tools/call" || !ok || r.Params == nil || o == nil {
			return next(ctx, method, req)
		}
		g, _ := ctx.Value(guardKey{}).(*callGuard)
		if g == nil {
			return next(ctx, method, req)
		}
		tool := r.Params.Name
		if _, known := o.hint(tool); !known {
			return next(ctx, method, req) // the SDK says the tool is unknown
		}
		args, approvalID, raw, err := splitArgs(r.Params.Arguments)
		if err != nil {
			if strings.Contains(err.Error(), api.ApprovalIDArg) {
				return s.refusePolicy(ctx, g, "invalid", "", fmt.Sprintf("invalid %s: %v: pass the ID that the held call returned, e.g. \"apr-…\"", api.ApprovalIDArg, err), errdefs.ErrInvalid)
			}
			return next(ctx, method, req) // malformed arguments: the SDK says what is wrong
		}
		if raw != nil {
			r.Params.Arguments = raw
		}
		p, _ := PrincipalFromContext(ctx)
		in := o.input(ctx, p, tool, args)
		d := o.policy.Evaluate(in)
		if tool == api.ToolApplyPlan {
			if pin, ok := o.planInput(ctx, p, args); ok {
				d = stricter(d, o.policy.Evaluate(pin))
			}
		}
		g.rule = d.Rule
		approved := false
		switch d.Effect {
		case policy.Deny:
			return s.refusePolicy(ctx, g, d.Rule, d.Reason, o.denyMessage(tool, d), errdefs.ErrPermission)
		case policy.NeedsApproval:
			if dry, _ := args["dry_run"].(bool); dry && approvalID == "" {
				// A dry run changes nothing: applying its plan is what
				// needs the approval (apply_plan is judged as the change).
				g.reason = "dry run: approval is asked when the plan is applied"
				break
			}
			if approvalID == "" {
				return s.hold(ctx, g, p, tool, args, d)
			}
			if o.backend == nil {
				return s.refusePolicy(ctx, g, d.Rule, d.Reason, "this server has no approval queue, so calls that need approval cannot run", errdefs.ErrPermission)
			}
			if err := o.backend.UseApproval(ctx, approvalID, p.Name, tool, argsHash(o.argsKey, args)); err != nil {
				msg := fmt.Sprintf("approval %s cannot be used for this call: %v", approvalID, err)
				return s.refusePolicy(ctx, g, d.Rule, "approval "+approvalID+" refused", msg, errdefs.ErrPermission)
			}
			approved = true
			g.reason = "approved: " + approvalID
		}
		if o.confirm && !approved && s.needsConfirmation(ctx, in) {
			if msg := confirm(ctx, r, tool, in); msg != "" {
				g.reason = "declined by the user"
				return s.refusePolicy(ctx, g, d.Rule, "declined by the user", msg, errdefs.ErrPermission)
			}
			g.reason = "confirmed by the user"
		}
		return next(ctx, method, req)
	}
}

// denyMessage names the rule and says who can change it.
func (o *overseer) denyMessage(tool string, d policy.Decision) string {
	who := "Only whoever runs the gantry server can change this: the policy is the file given to gantry dev --policy"
	if src := o.policy.Source(); src != "" {
		who += " (" + src + ")"
	}
	who += ", and the mode is set with --mode; changing either needs a restart. Ask them if this call should be allowed."
	if strings.HasPrefix(d.Rule, "mode/") {
		who = "Only whoever runs the gantry server can change the mode (gantry dev --mode, " + string(o.policy.Mode()) + " now); it needs a restart."
	}
	return fmt.Sprintf("permission denied by policy rule %s: %s. %s", d.Rule, d.Reason, who)
}

// refusePolicy answers a call with a tool error and marks the audit record.
func (s *Server) refusePolicy(ctx context.Context, g *callGuard, rule, reason, msg string, cat error) (sdk.Result, error) {
	g.deny = reason
	if g.deny == "" {
		g.deny = msg
	}
	g.rule = rule
	noteResult(ctx, &toolError{msg: msg, cat: cat})
	s.log.Warn("tool call refused by policy", "tool", g.tool, "principal", g.p.Name, "rule", rule, "reason", reason)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: msg}}}, nil
}

// hold queues the call for approval and answers with a pending result. The
// result is an error result, so that no client mistakes it for the call's
// outcome, with the approval in its structured content.
func (s *Server) hold(ctx context.Context, g *callGuard, p Principal, tool string, args map[string]any, d policy.Decision) (sdk.Result, error) {
	o := s.over
	g.decision, g.result = decisionPending, "queued"
	if o.backend == nil {
		return s.refusePolicy(ctx, g, d.Rule, d.Reason, fmt.Sprintf("policy rule %s requires approval, but this server has no approval queue: %s", d.Rule, d.Reason), errdefs.ErrPermission)
	}
	var redacted map[string]any
	_ = json.Unmarshal(redactArguments(g.args), &redacted)
	delete(redacted, api.ApprovalIDArg)
	a, err := o.backend.QueueApproval(ctx, api.Approval{Principal: p.Name, Tool: tool, Arguments: redacted, Rule: d.Rule, Reason: d.Reason}, argsHash(o.argsKey, args), o.ttl)
	if err != nil {
		g.decision, g.result = "", ""
		return s.refusePolicy(ctx, g, d.Rule, "could not queue for approval", fmt.Sprintf("policy rule %s requires approval, but the call could not be queued: %v; retry in a few seconds", d.Rule, err), errdefs.ErrUnavailable)
	}
	pend := api.PendingApproval{
		Status: "pending_approval", ApprovalID: a.ID, Tool: tool, Rule: d.Rule, Reason: d.Reason, ExpiresAt: a.ExpiresAt,
		HowTo: fmt.Sprintf("The call did not run. A human with an admin token other than yours (gantry token create --scope admin --name NAME makes one) approves it with: gantry approve %s (or the approve tool). "+
			"Then repeat exactly the same %s call with the same arguments plus \"%s\": %q (from the gantry CLI: the same command with --approval %s). "+
			"The approval works once and expires at %s.",
			a.ID, tool, api.ApprovalIDArg, a.ID, a.ID, a.ExpiresAt.UTC().Format(time.RFC3339)),
	}
	s.log.Info("tool call held for approval", "tool", tool, "principal", p.Name, "rule", d.Rule, "approval", a.ID)
	reason := d.Reason
	if !strings.Contains(reason, d.Rule) { // a rule's message, or a default that names no rule
		reason = fmt.Sprintf("policy rule %s: %s", d.Rule, reason)
	}
	text := fmt.Sprintf("pending approval %s: %s. %s", a.ID, reason, pend.HowTo)
	return &sdk.CallToolResult{IsError: true, StructuredContent: pend, Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil
}
