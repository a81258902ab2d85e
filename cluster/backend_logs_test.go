package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/state"
)

func TestLogsSinceAndGrep(t *testing.T) {
	e := newPlanEnv(t)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": strings.Replace(planSpec, "replicas: 3", "replicas: 2", 1)}, nil, false)
	e.settle(t)
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(insts) != 2 {
		t.Fatalf("%d instances, want 2", len(insts))
	}
	fresh, stale := insts[0].ID, insts[1].ID
	write := func(id, text string, mtime time.Time) {
		p := filepath.Join(e.logDir, id+".log")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write(fresh, "GET /a 200\nGET /b 500\nerror: disk full\nGET /c 200\n", time.Now())
	write(stale, "GET /old 500\n", time.Now().Add(-2*time.Hour))

	var res api.LogsResult
	text := e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web", Grep: " 500"}, &res, false)
	if got := blockLines(res); got != fresh+": GET /b 500|"+stale+": GET /old 500" && got != stale+": GET /old 500|"+fresh+": GET /b 500" {
		t.Errorf("grep ' 500' = %s", got)
	}
	if !strings.Contains(text, "untrusted") || !strings.Contains(res.Note, "grep searched") {
		t.Errorf("grep output lacks the fence or note: %q / %q", text, res.Note)
	}
	e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web", Grep: `/^(error|GET /c)/`, Since: "1h"}, &res, false)
	if got := blockLines(res); got != fresh+": error: disk full,GET /c 200" {
		t.Errorf("regexp grep since 1h = %s", got)
	}
	if !strings.Contains(res.Note, "no timestamps") {
		t.Errorf("since note = %q", res.Note)
	}
	e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web", Since: time.Now().Add(time.Minute).Format(time.RFC3339)}, &res, false)
	if len(res.Instances) != 0 {
		t.Errorf("since a future time returned %s", blockLines(res))
	}
	e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web", Grep: "GET", Tail: 1, Instance: fresh}, &res, false)
	if got := blockLines(res); got != fresh+": GET /c 200" || !res.Truncated {
		t.Errorf("grep with tail 1 = %s (truncated %v), want the last match, truncated", got, res.Truncated)
	}
	for _, bad := range []api.LogsInput{
		{Name: "web", Grep: "/(unclosed/"},
		{Name: "web", Grep: strings.Repeat("a", 300)},
		{Name: "web", Grep: "a\nb"},
		{Name: "web", Since: "last tuesday"},
	} {
		msg := e.call(t, api.ToolServiceLogs, bad, nil, true)
		if !strings.Contains(msg, "grep") && !strings.Contains(msg, "since") {
			t.Errorf("%+v: error %q does not name the field", bad, msg)
		}
	}
}

// blockLines renders blocks as "id: line,line|id: line".
func blockLines(res api.LogsResult) string {
	var parts []string
	for _, b := range res.Instances {
		if len(b.Lines) > 0 {
			parts = append(parts, b.Instance+": "+strings.Join(b.Lines, ","))
		}
	}
	return strings.Join(parts, "|")
}
