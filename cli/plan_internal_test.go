package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

func TestPrintPlan(t *testing.T) {
	var b bytes.Buffer
	printPlan(&b, &api.Plan{ID: "plan-0123456789abcdef01234567", Action: api.ActionUpdate, Summary: "update service \"web\" from version 1 to 2",
		Changes: []string{"image"}, ExpiresAt: time.Now().Add(time.Minute),
		Create:  []api.PlannedInstance{{Slot: 2, Node: "n1", ToVersion: 2}},
		Replace: []api.PlannedInstance{{ID: "web-0-abc", Slot: 0, Node: "n1", FromVersion: 1, ToVersion: 2}},
		Stop:    []api.PlannedInstance{{ID: "web-5-def", Slot: 5, Node: "n1", FromVersion: 1}}})
	out := b.String()
	for _, want := range []string{
		"plan plan-0123456789abcdef01234567 (nothing changed yet)",
		"changed fields: image",
		"create   slot 2  (new) on n1",
		"replace  slot 0  web-0-abc on n1  v1 -> v2",
		"stop     slot 5  web-5-def on n1",
		"gantry apply plan-0123456789abcdef01234567",
		"while the service is unchanged)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printPlan(&b, &api.Plan{ID: "plan-x", Action: api.ActionNone, Summary: "no change"})
	if strings.Contains(b.String(), "gantry apply") {
		t.Errorf("a plan that changes nothing offers to apply it:\n%s", b.String())
	}
}
