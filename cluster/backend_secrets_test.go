package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

// newSecretsEnv is newPlanEnv with a secrets key.
func newSecretsEnv(t *testing.T) (*planEnv, *Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	st, err := state.Open(ctx, state.Config{DataDir: dir, NodeID: "n1"})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Apply(ctx, state.PutNode{Node: state.Node{ID: "n1", Name: "n1", CPU: 4000, Memory: 8 << 30}}); err != nil {
		t.Fatal(err)
	}
	key, err := state.LoadSecretKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	be := &Backend{Store: st, LogPath: func(id string) string { return filepath.Join(logDir, id+".log") }, Secrets: &Secrets{Store: st, Key: key}}
	srv, err := mcp.NewServer(mcp.Config{Services: be, Images: be, Plans: be, History: be, Ops: be, Secrets: be, Token: "t0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	ct, tr := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(context.Background(), tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "test"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return &planEnv{store: st, ctl: controller.New(st, nil), cs: cs, logDir: logDir}, be
}

const secretSpec = "name: web\nimage: busybox:1\nreplicas: 1\ncommand: [sleep, '1000']\nsecrets: {DB_PASSWORD: db-password}\n"

func TestSecretsThroughTheBackend(t *testing.T) {
	const value = "correct-horse-battery"
	e, be := newSecretsEnv(t)

	// A spec naming a missing secret is refused, dry run or not, naming
	// the field and the command that fixes it.
	for _, dry := range []bool{true, false} {
		msg := e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": secretSpec, "dry_run": dry}, nil, true)
		if !strings.Contains(msg, "secrets.DB_PASSWORD") || !strings.Contains(msg, "gantry secret set db-password") {
			t.Errorf("deploy (dry run %v) with a missing secret: %s", dry, msg)
		}
	}

	var set api.SetSecretResult
	e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": value, "dry_run": true}, &set, false)
	if set.Action != api.SecretCreate || !set.DryRun {
		t.Errorf("dry run = %+v", set)
	}
	if _, err := e.store.Secret("db-password"); err == nil {
		t.Fatal("a dry run stored the secret")
	}
	e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": value}, &set, false)
	if set.Action != api.SecretCreate || set.Version != 1 {
		t.Errorf("create = %+v", set)
	}
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": secretSpec}, nil, false)
	e.settle(t)

	got, err := be.Secrets.ResolveSecrets(t.Context(), map[string]string{"DB_PASSWORD": "db-password"})
	if err != nil || got["DB_PASSWORD"] != value {
		t.Fatalf("ResolveSecrets = %v, %v", got, err)
	}

	// The value in the log comes back scrubbed, and grep cannot find it.
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(insts) != 1 {
		t.Fatalf("%d instances", len(insts))
	}
	if err := os.WriteFile(filepath.Join(e.logDir, insts[0].ID+".log"), []byte("start\npassword is "+value+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs api.LogsResult
	text := e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web"}, &logs, false)
	if strings.Contains(text, value) || !strings.Contains(text, "[secret:db-password]") || strings.Contains(blockLines(logs), value) {
		t.Errorf("service_logs: %s", text)
	}
	e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web", Grep: "correct-horse"}, &logs, false)
	if got := blockLines(logs); got != "" {
		t.Errorf("grep for part of the value matched: %s", got)
	}

	// Replacing keeps scrubbing the old value (instances started before
	// print it) and says who still runs with it.
	e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": "new-value-2"}, &set, false)
	if set.Action != api.SecretReplace || set.Version != 2 || len(set.UsedBy) != 1 || !strings.Contains(set.Message, "restart") {
		t.Errorf("replace = %+v", set)
	}
	text = e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web"}, nil, false)
	if strings.Contains(text, value) {
		t.Errorf("the previous value is not scrubbed: %s", text)
	}

	var list api.SecretList
	text = e.call(t, api.ToolListSecrets, map[string]any{}, &list, false)
	if len(list.Secrets) != 1 || list.Secrets[0].Version != 2 || strings.Join(list.Secrets[0].UsedBy, ",") != "web" || strings.Contains(text, "new-value-2") {
		t.Errorf("list = %+v / %s", list, text)
	}

	for _, dry := range []bool{true, false} {
		msg := e.call(t, api.ToolDeleteSecret, map[string]any{"name": "db-password", "dry_run": dry}, nil, true)
		if !strings.Contains(msg, "web") {
			t.Errorf("delete (dry run %v) of a referenced secret: %s", dry, msg)
		}
	}
	n := 0
	for _, ev := range e.store.Events(state.EventFilter{}) {
		if ev.Type == "SecretSet" {
			n++
		}
		if strings.Contains(ev.Message, value) {
			t.Errorf("event holds the value: %+v", ev)
		}
	}
	if n != 2 {
		t.Errorf("%d SecretSet events, want 2", n)
	}

	if err := be.Secrets.Check(); err != nil {
		t.Errorf("Check with the right key: %v", err)
	}
	other, err := state.LoadSecretKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wrong := &Secrets{Store: e.store, Key: other}
	if err := wrong.Check(); err == nil || !strings.Contains(err.Error(), "db-password") || !strings.Contains(err.Error(), "secrets.key") {
		t.Errorf("Check with another key: %v", err)
	}
	if _, err := wrong.ResolveSecrets(t.Context(), map[string]string{"DB_PASSWORD": "db-password"}); err == nil || !strings.Contains(err.Error(), "secrets.DB_PASSWORD") {
		t.Errorf("ResolveSecrets with another key: %v", err)
	}
}

// TestSecretPieceAtLogCut: a log line longer than what service_logs reads
// is returned by its end, and the cut can fall inside a secret's value;
// the piece left at the start of the line is removed with or without grep.
func TestSecretPieceAtLogCut(t *testing.T) {
	const value = "correct-horse-battery"
	e, _ := newSecretsEnv(t)
	e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": value}, nil, false)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": secretSpec}, nil, false)
	e.settle(t)
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(insts) != 1 {
		t.Fatalf("%d instances", len(insts))
	}
	// service_logs reads at most maxLogBytes: the line's first bytes and
	// the first 7 of the value fall before the cut.
	line := strings.Repeat("a", 100) + value + strings.Repeat("b", maxLogBytes-1-(len(value)-7))
	if err := os.WriteFile(filepath.Join(e.logDir, insts[0].ID+".log"), []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, in := range []api.LogsInput{{Name: "web"}, {Name: "web", Since: "1h"}} {
		var logs api.LogsResult
		e.call(t, api.ToolServiceLogs, in, &logs, false)
		if len(logs.Instances) != 1 || len(logs.Instances[0].Lines) != 1 {
			t.Fatalf("service_logs %+v: %d blocks", in, len(logs.Instances))
		}
		got := logs.Instances[0].Lines[0]
		if !strings.HasPrefix(got, "bbb") || strings.Contains(got, value[7:10]) || !logs.Truncated {
			t.Errorf("service_logs %+v: line starts %q (truncated %v), want the value's piece removed", in, got[:min(len(got), 40)], logs.Truncated)
		}
	}
}

// A deploy that drops a secret from the spec leaves instances of the older
// version running (until the rollout replaces them) with the value in
// their environment: their output is still scrubbed.
func TestSecretOfAnOlderVersionIsScrubbed(t *testing.T) {
	const value = "old-version-credential"
	e, be := newSecretsEnv(t)
	e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": value}, nil, false)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": secretSpec}, nil, false)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": "name: web\nimage: busybox:1\nreplicas: 1\ncommand: [sleep, '1001']\n"}, nil, false)
	if got := be.SecretScrubber("web").Scrub("password is " + value); got != "password is [secret:db-password]" {
		t.Errorf("output of a version-1 instance after version 2 dropped the secret: %q", got)
	}
	if be.SecretScrubber("nosuch") != nil {
		t.Error("a scrubber for a service that does not exist")
	}
}

// An instance keeps the value it started with; after two replaces the
// store no longer holds it, but the instance's bundle does, and scrubbing
// reads it from there (the worker's SecretEnv).
func TestSecretReplacedTwiceIsScrubbed(t *testing.T) {
	const first = "first-credential-value"
	e, be := newSecretsEnv(t)
	e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": first}, nil, false)
	e.call(t, api.ToolDeploy, map[string]any{"spec_yaml": secretSpec}, nil, false)
	e.settle(t)
	insts, _ := e.store.Instances(state.InstanceFilter{Service: "web"})
	if len(insts) != 1 {
		t.Fatalf("%d instances", len(insts))
	}
	started := insts[0].ID
	for _, v := range []string{"second-credential", "third-credential"} {
		e.call(t, api.ToolSetSecret, map[string]any{"name": "db-password", "value": v}, nil, false)
	}
	if got := be.SecretScrubber("web").Scrub(first); got != first {
		t.Fatalf("without the instances' values the first value is scrubbed (%q): the test proves nothing", got)
	}
	var asked []string
	be.InstanceEnv = func(id string, vars []string) map[string]string {
		if id != started {
			return nil
		}
		asked = vars
		return map[string]string{"DB_PASSWORD": first}
	}
	if got := be.SecretScrubber("web").Scrub("password is " + first); got != "password is [secret:db-password]" {
		t.Errorf("the value the instance started with, replaced twice since: %q", got)
	}
	if strings.Join(asked, ",") != "DB_PASSWORD" {
		t.Errorf("InstanceEnv asked for %v, want the spec's secret variables", asked)
	}
	if err := os.WriteFile(filepath.Join(e.logDir, started+".log"), []byte("password is "+first+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if text := e.call(t, api.ToolServiceLogs, api.LogsInput{Name: "web"}, nil, false); strings.Contains(text, first) {
		t.Errorf("service_logs: %s", text)
	}
}
