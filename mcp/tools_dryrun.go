package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

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

// ImagePlanner works out what pull_image and import_image would do without
// doing it. The Images backend provides it when it supports dry runs.
type ImagePlanner interface {
	PlanPull(ctx context.Context, ref string) (*api.ImagePlan, error)
	// PlanImport returns the tarball's format (docker-save or oci-layout)
	// and the images it holds.
	PlanImport(ctx context.Context, path string) (string, []api.ImagePlan, error)
}

func (s *Server) imagePlanner(tool string) (ImagePlanner, error) {
	ip, ok := s.images.(ImagePlanner)
	if !ok {
		return nil, &toolError{msg: fmt.Sprintf("%s: this server's image store does not support dry runs: call it without dry_run", tool), cat: errdefs.ErrInvalid}
	}
	return ip, nil
}

func (s *Server) dryRunPull(ctx context.Context, ref string) (api.PullImageResult, string, error) {
	ip, err := s.imagePlanner(api.ToolPullImage)
	if err != nil {
		return api.PullImageResult{}, "", err
	}
	p, err := ip.PlanPull(ctx, ref)
	if err != nil {
		return api.PullImageResult{}, "", describe(api.ToolPullImage, err, errorHint{notFound: "check that the registry, repository and tag exist"})
	}
	if p == nil {
		return api.PullImageResult{}, "", errors.New("the image store returned no plan")
	}
	if p.Layers == nil {
		p.Layers = []api.PlannedLayer{}
	}
	res := api.PullImageResult{Image: api.Image{Ref: p.Ref, Digest: p.Digest, Size: p.Size, Layers: len(p.Layers)}, Plan: p}
	return res, "dry run, nothing downloaded. " + imagePlanText(p, "pull"), nil
}

func (s *Server) dryRunImport(ctx context.Context, path string) (api.ImportImageResult, string, error) {
	ip, err := s.imagePlanner(api.ToolImportImage)
	if err != nil {
		return api.ImportImageResult{}, "", err
	}
	format, plans, err := ip.PlanImport(ctx, path)
	if err != nil {
		return api.ImportImageResult{}, "", describe(api.ToolImportImage, err, errorHint{notFound: "the path is read on the server's host: check that the file exists there"})
	}
	res := api.ImportImageResult{ImageList: api.ImageList{Images: []api.Image{}}, Format: format, Plan: []api.ImagePlan{}}
	var b strings.Builder
	fmt.Fprintf(&b, "dry run, nothing imported. %s is a valid %s tarball with %d image%s:", path, format, len(plans), plural(len(plans)))
	for _, p := range plans {
		if p.Layers == nil {
			p.Layers = []api.PlannedLayer{}
		}
		res.Images = append(res.Images, api.Image{Ref: p.Ref, Digest: p.Digest, Size: p.Size, Layers: len(p.Layers)})
		res.Plan = append(res.Plan, p)
		b.WriteString("\n- ")
		b.WriteString(imagePlanText(&p, "import"))
	}
	return res, b.String(), nil
}

func imagePlanText(p *api.ImagePlan, verb string) string {
	what := "download"
	if verb == "import" {
		what = "unpack"
	}
	return fmt.Sprintf("%s resolves to %s: %d layer%s (%s), %d already cached; a %s would %s %s",
		p.Ref, p.Digest, len(p.Layers), plural(len(p.Layers)), humanBytes(p.Size), p.CachedLayers, verb, what, humanBytes(p.DownloadBytes))
}

// scopeAllows says in words what a token of scope may do.
var scopeAllows = map[Scope]string{
	ScopeRead:    "list and inspect services, instances, nodes, logs and events",
	ScopeOperate: "also deploy, scale, restart, remove, pull and import images and apply plans",
	ScopeAdmin:   "also manage tokens, read the audit log and decide approvals",
}

func dryRunCreateToken(ctx context.Context, in api.CreateTokenInput) (api.CreatedToken, string, error) {
	by := "you"
	if p, ok := PrincipalFromContext(ctx); ok && p.Name != "" {
		by = p.Name
	}
	return api.CreatedToken{Name: in.Name, Scope: in.Scope, DryRun: true},
		fmt.Sprintf("dry run, nothing created and no secret generated. create_token would make a %s token %q, created by %s, that can %s; its secret would be shown once.",
			in.Scope, in.Name, by, scopeAllows[Scope(in.Scope)]), nil
}

func (s *Server) dryRunRevokeToken(ctx context.Context, id string) (api.RevokeTokenResult, string, error) {
	hint := errorHint{subject: fmt.Sprintf("token %q", id), notFound: "list token IDs with list_tokens (gantry token ls)"}
	toks, err := s.access.ListTokens(ctx)
	if err != nil {
		return api.RevokeTokenResult{}, "", describe(api.ToolRevokeToken, err, hint)
	}
	for _, t := range toks {
		if t.ID != id {
			continue
		}
		res := api.RevokeTokenResult{ID: t.ID, Name: t.Name, AlreadyRevoked: t.Revoked, DryRun: true, Token: &t}
		if t.Revoked {
			return res, fmt.Sprintf("dry run: token %s (%s, scope %s) is already revoked; revoke_token would change nothing", t.ID, t.Name, t.Scope), nil
		}
		return res, fmt.Sprintf("dry run, nothing revoked. revoke_token would revoke token %s (%s, scope %s, created by %s at %s): requests carrying it would be refused from then on",
			t.ID, t.Name, t.Scope, orUnknown(t.CreatedBy), t.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")), nil
	}
	return api.RevokeTokenResult{}, "", describe(api.ToolRevokeToken, fmt.Errorf("token %q: %w", id, errdefs.ErrNotFound), hint)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// dryRunDecide shows the held call approve or reject would decide,
// refusing what the real call refuses: an unknown ID, an approval that is
// not pending (decided, used or expired) and the caller's own call.
func (s *Server) dryRunDecide(ctx context.Context, tool, id string, approve bool) (api.Approval, string, error) {
	hint := errorHint{subject: "approval " + id, notFound: "list approvals with list_approvals (gantry approvals)"}
	list, err := s.over.backend.ListApprovals(ctx, "")
	if err != nil {
		return api.Approval{}, "", describe(tool, err, hint)
	}
	var a *api.Approval
	for i := range list {
		if list[i].ID == id {
			a = &list[i]
		}
	}
	switch {
	case a == nil:
		return api.Approval{}, "", describe(tool, errdefs.WithHint(fmt.Errorf("approval %q: %w", id, errdefs.ErrNotFound), "list approvals with gantry approvals"), hint)
	case a.State != api.ApprovalPending:
		return api.Approval{}, "", describe(tool, fmt.Errorf("approval %s is %s, not pending: only a pending approval can be approved or rejected: %w", id, a.State, errdefs.ErrConflict), hint)
	}
	if p, ok := PrincipalFromContext(ctx); ok && p.Name == a.Principal {
		return api.Approval{}, "", describe(tool, fmt.Errorf("approval %s: %s asked for it and cannot decide it; another principal with the admin scope must: %w", id, p.Name, errdefs.ErrPermission), hint)
	}
	a.DryRun = true
	verb := "reject it: the call would never run"
	if approve {
		verb = fmt.Sprintf("approve it: %s could then repeat the call once with approval_id %q until %s", a.Principal, a.ID, a.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	args, _ := json.Marshal(a.Arguments)
	return *a, fmt.Sprintf("dry run, nothing decided. Held call %s: %s by %s (rule %s) with arguments %s. %s would %s.",
		a.ID, a.Tool, a.Principal, orUnknown(a.Rule), args, tool, verb), nil
}
