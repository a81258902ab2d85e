package mcp

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/policy"
)

func TestArgsHashIgnoresApprovalIDAndKeyOrder(t *testing.T) {
	a, id, raw, err := splitArgs(json.RawMessage(`{"replicas": 3, "approval_id": "apr-00", "name": "web"}`))
	if err != nil || id != "apr-00" || strings.Contains(string(raw), "approval_id") {
		t.Fatalf("split: %v %q %s", err, id, raw)
	}
	b, _, _, _ := splitArgs(json.RawMessage(`{"name":"web","replicas":3}`))
	c, _, _, _ := splitArgs(json.RawMessage(`{"name":"web","replicas":4}`))
	k := []byte("approval key")
	if argsHash(k, a) != argsHash(k, b) || argsHash(k, a) == argsHash(k, c) || argsHash(k, a) == argsHash([]byte("other"), a) {
		t.Fatal("hash must depend on the arguments and the key only, not on approval_id or key order")
	}
	if _, _, _, err := splitArgs(json.RawMessage(`{"approval_id": 7}`)); err == nil {
		t.Fatal("a non-string approval_id was accepted")
	}
}

// FuzzPolicyArguments feeds arbitrary arguments through what the policy
// middleware does before a call runs: no panic, approval_id never reaches
// the tool, and every decision is a known effect.
func FuzzPolicyArguments(f *testing.F) {
	pol, err := policy.Load([]byte(`rules:
  - {name: big, when: 'tool == "scale_service" && args.replicas > 10', effect: deny}
  - {name: prod, when: 'labels.tier == "prod"', effect: needs-approval}
`), "", "fuzz.yaml")
	if err != nil {
		f.Fatal(err)
	}
	o := &overseer{policy: pol, planStore: func() *planStore { return nil }}
	f.Add("scale_service", []byte(`{"name":"web","replicas":11}`))
	f.Add("deploy", []byte(`{"spec_yaml":"name: web\nimage: x:1\nlabels: {tier: prod}\n"}`))
	f.Add("deploy", []byte(`{"spec":{"name":"web","image":"x:1","labels":{"tier":"prod"}},"approval_id":"apr-1"}`))
	f.Add("apply_plan", []byte(`{"plan_id":"plan-000000000000000000000000"}`))
	f.Fuzz(func(t *testing.T, tool string, data []byte) {
		args, id, raw, err := splitArgs(data)
		if err != nil {
			return
		}
		if id != "" {
			var m map[string]any
			if json.Unmarshal(raw, &m) != nil {
				t.Fatalf("rewritten arguments are not an object: %s", raw)
			}
			if _, ok := m[api.ApprovalIDArg]; ok {
				t.Fatal("approval_id reaches the tool")
			}
		}
		_ = argsHash([]byte("k"), args)
		p := Principal{Name: "ci/1", Scopes: []Scope{ScopeOperate}}
		d := o.policy.Evaluate(o.input(context.Background(), p, tool, args))
		if pin, ok := o.planInput(context.Background(), p, args); ok {
			d = stricter(d, o.policy.Evaluate(pin))
		}
		switch d.Effect {
		case policy.Allow, policy.Deny, policy.NeedsApproval:
		default:
			t.Fatalf("effect %q", d.Effect)
		}
	})
}
