package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/intent"
)

// registerIntentFeatures adds plan_intent, the prompts and, when cfg has a
// ResourceSource, the resources.
func registerIntentFeatures(s *Server, cfg Config) {
	addTool(s, &sdk.Tool{
		Name: api.ToolPlanIntent,
		Description: "Turn a structured intent (kind web, worker or batch; name; image; port for web; availability standard or high; exposure internal or public; " +
			"expected load; budget limits) into a concrete service spec, with a plain-language explanation of every choice. Deterministic, and changes nothing: " +
			"the result has the spec as YAML (spec_yaml) and as an object (spec), which deploy accepts as they are. Cron is refused: Gantry has no scheduler for periodic jobs yet.",
		Annotations: readOnly("Plan from intent"),
	}, s.planIntent)
	registerPrompts(s)
	registerResources(s, cfg.Resources)
}

func (s *Server) planIntent(ctx context.Context, _ *sdk.CallToolRequest, in api.PlanIntentInput) (api.PlanIntentResult, string, error) {
	// One decoding path for every caller: the intent package's own, which
	// rejects unknown fields and names the field in every error.
	data, err := json.Marshal(in)
	if err != nil {
		return api.PlanIntentResult{}, "", invalidf("the intent cannot be encoded as JSON (%v): pass plain strings and numbers", err)
	}
	it, err := intent.Decode(data)
	if err == nil {
		var res intent.Result
		if res, err = intent.Compile(it); err == nil {
			return s.intentResult(ctx, res)
		}
	}
	return api.PlanIntentResult{}, "", intentError(err)
}

func (s *Server) intentResult(ctx context.Context, res intent.Result) (api.PlanIntentResult, string, error) {
	text, err := specYAML(&res.Spec)
	if err != nil {
		return api.PlanIntentResult{}, "", err
	}
	raw, err := json.Marshal(res.Spec)
	if err != nil {
		return api.PlanIntentResult{}, "", err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return api.PlanIntentResult{}, "", err
	}
	out := api.PlanIntentResult{
		Spec:        obj,
		SpecYAML:    text,
		Explanation: res.Explanation,
		Next: fmt.Sprintf("not applied: nothing has changed. To deploy, call %s with spec_yaml set to this spec_yaml "+
			"(with dry_run true first to see what would change), or save it to a file and run gantry deploy -f FILE", api.ToolDeploy),
	}
	var planText string
	if s.plan != nil {
		// A dry run of the deploy: what it would change now, kept for apply_plan.
		svc := res.Spec
		p, text, err := s.dryRun(ctx, api.ToolPlanIntent, PlanRequest{Kind: PlanDeploy, Service: svc.Name, Spec: &svc})
		if err != nil {
			out.Next = fmt.Sprintf("not applied: nothing has changed. A dry run of the deploy failed (%v); fix that, then call %s with spec_yaml set to this spec_yaml", err, api.ToolDeploy)
		} else {
			out.Plan, planText = p, text
			out.Next = fmt.Sprintf("not applied: nothing has changed. To deploy, apply the plan with %s {\"plan_id\": %q} while the service is unchanged, "+
				"or call %s with spec_yaml set to this spec_yaml", api.ToolApplyPlan, p.ID, api.ToolDeploy)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "planned service %q (%d replica%s, %s CPU and %s memory each); not applied.\nWhy:\n", res.Spec.Name,
		res.Spec.Replicas, plural(res.Spec.Replicas), res.Spec.Resources.CPU, res.Spec.Resources.Memory)
	for _, line := range res.Explanation {
		b.WriteString("- ")
		b.WriteString(line)
		b.WriteString("\n")
	}
	b.WriteString("Spec:\n")
	b.WriteString(text)
	if planText != "" {
		b.WriteString("Plan: ")
		b.WriteString(planText)
		b.WriteString("\n")
	}
	b.WriteString(out.Next)
	return out, b.String(), nil
}

// intentError renders an intent's problems as a tool error, one per line.
func intentError(err error) error {
	var ie *intent.Error
	if !errors.As(err, &ie) {
		return &toolError{msg: fmt.Sprintf("the intent was refused: %v", err), cat: errdefs.ErrInvalid}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the intent cannot be planned (%d problem%s). Fix each and call %s again:", len(ie.Problems), plural(len(ie.Problems)), api.ToolPlanIntent)
	for _, p := range ie.Problems {
		b.WriteString("\n- ")
		b.WriteString(p.String())
	}
	return &toolError{msg: b.String(), cat: errdefs.ErrInvalid}
}
