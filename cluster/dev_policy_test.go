package cluster

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/policy"
)

func TestDevPolicyFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("rules:\n  - {name: r, when: 'tool == \"deploy\"', effect: deny}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("rules:\n  - {name: r, when: 'tool ==', effect: deny}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := ParseDevFlags([]string{"--data-dir", dir, "--policy", good, "--mode", "read-only", "--confirm-destructive=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := o.Policy.compile()
	if err != nil || pol == nil || pol.Mode() != policy.ModeReadOnly || pol.RuleCount() != 1 || o.Policy.ConfirmDestructive || pol.Source() != good {
		t.Fatalf("policy = %+v, %v; options %+v", pol, err, o.Policy)
	}
	if o, err := ParseDevFlags([]string{"--data-dir", dir}, io.Discard); err != nil || !o.Policy.ConfirmDestructive {
		t.Fatalf("defaults: %+v, %v", o, err)
	} else if pol, err := o.Policy.compile(); pol != nil || err != nil {
		t.Fatalf("no policy flags gave a policy: %v, %v", pol, err)
	}
	for _, args := range [][]string{{"--policy", bad}, {"--policy", filepath.Join(dir, "missing.yaml")}, {"--mode", "sometimes"}} {
		_, err := ParseDevFlags(append([]string{"--data-dir", dir}, args...), io.Discard)
		if err == nil {
			t.Errorf("%v: accepted", args)
			continue
		}
		if args[0] == "--policy" && args[1] == bad && !strings.Contains(err.Error(), "rule r.when: CEL") {
			t.Errorf("bad policy error %q does not name the rule and CEL", err)
		}
	}
}
