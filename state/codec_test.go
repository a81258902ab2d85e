package state

import (
	"bytes"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
	hclog "github.com/hashicorp/go-hclog"
)

// allOps has one op of each type, with every kind of field set.
func allOps() []Op {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	return []Op{
		PutService{Service: Service{Name: "web", Spec: webSpec("busybox", 2)}, ExpectModifyIndex: 9},
		DeleteService{Name: "web"},
		PutInstance{Instance: Instance{ID: "web-0", Service: "web", Slot: 3, Node: "n", Desired: DesiredRun,
			InstanceStatus: InstanceStatus{State: StateRunning, Ports: map[string]int{"http": 1}}}, ReplaceStatus: true},
		SetInstanceDesired{ID: "web-0", Desired: DesiredStop},
		SetInstanceStatus{ID: "web-0", Status: InstanceStatus{State: StateExited, LastExit: &Exit{Code: 1, At: at}, StartedAt: at}},
		DeleteInstance{ID: "web-0"},
		PutNode{Node: Node{ID: "n", Labels: map[string]string{"a": "b"}, CPU: 1000}},
		AppendEvent{Event: Event{Service: "web", Type: "Started", Time: at}},
		RestartService{Name: "web", ExpectModifyIndex: 4},
		SetNodeScheduling{ID: "n", Mark: SchedDraining},
		ServiceAbsent{Name: "web"},
		PutToken{Token: Token{ID: "t1", Name: "ci", Scope: ScopeRead, Hash: strings.Repeat("ab", 32), CreatedAt: at}},
		RevokeToken{ID: "t1", By: "admin"},
		AppendAudit{Entries: []AuditEntry{{Time: at, Principal: "admin", Tool: "deploy", Arguments: []byte(`{"name":"web"}`), Decision: AuditAllowed, Result: "ok", LatencyUS: 5}}, Keep: 10},
		PutApproval{Approval: Approval{ID: "apr-1", Principal: "ci/t1", Tool: "scale_service", ArgsHash: "h", Arguments: []byte(`{"replicas":3}`), Rule: "prod", CreatedAt: at}, TTL: time.Hour},
		DecideApproval{ID: "apr-1", Approve: true, By: "admin", Reason: "ok"},
		UseApproval{ID: "apr-1", Principal: "ci/t1", Tool: "scale_service", ArgsHash: "h"},
		PutSecret{Name: "db-password", Sealed: bytes.Repeat([]byte{7}, 40)},
		DeleteSecret{Name: "db-password"},
		PutJoinToken{ID: "abcdefghij", Role: JoinRoleWorker, SecretHash: strings.Repeat("cd", 32), ExpiresAt: at, MaxUses: 2, CreatedBy: "admin"},
		RevokeJoinToken{ID: "abcdefghij", By: "admin"},
		UseJoinToken{ID: "abcdefghij", SecretHash: strings.Repeat("cd", 32), Role: JoinRoleWorker, Node: "w1"},
		ScaleService{Name: "web", Replicas: 4},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	ops := allOps()
	// Every slot of the wire union is covered.
	if n := reflect.TypeOf(wireOp{}).NumField(); n != len(ops) {
		t.Fatalf("wireOp has %d fields, test covers %d ops", n, len(ops))
	}
	now := time.Now()
	data, err := encodeCommand(now, ops)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] != formatJSON {
		t.Errorf("format byte = %d, want %d", data[0], formatJSON)
	}
	gotTime, got, err := decodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	if !gotTime.Equal(now) {
		t.Errorf("time = %v, want %v", gotTime, now)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, ops)
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":        nil,
		"newer format": {2, '{', '}'},
		"bad json":     {formatJSON, '{'},
		"empty op":     append([]byte{formatJSON}, `{"ops":[{}]}`...),
		"two in one":   append([]byte{formatJSON}, `{"ops":[{"delete_service":{"name":"a"},"delete_instance":{"id":"b"}}]}`...),
	} {
		if _, _, err := decodeCommand(data); !errdefs.IsInvalid(err) {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}

func TestFSMRejectsUnknownFormat(t *testing.T) {
	// An entry from a newer binary fails that entry only, with a clear error.
	s := openStore(t, t.TempDir())
	f := s.raft.Apply([]byte{9, '{', '}'}, time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	resp := f.Response().(*fsmResponse)
	if !errdefs.IsInvalid(resp.err) || !strings.Contains(resp.err.Error(), "format 9") {
		t.Errorf("err = %v, want invalid naming format 9", resp.err)
	}
	apply(t, s, PutNode{Node: Node{ID: "n"}})
}

func TestSpecVersionIgnoresReplicas(t *testing.T) {
	a := webSpec("busybox", 1)
	b := webSpec("busybox", 5)
	if !sameSpecBesidesReplicas(a, b) {
		t.Error("a scale counted as a spec change")
	}
	b.Env = map[string]string{"PORT": "9090"}
	if sameSpecBesidesReplicas(a, b) {
		t.Error("an env change did not count as a spec change")
	}
	c := webSpec("busybox", 1)
	c.Health = &spec.Health{TCP: &spec.TCPCheck{Port: "http"}}
	if sameSpecBesidesReplicas(a, c) {
		t.Error("a health check change did not count as a spec change")
	}
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newHCLogAdapter(log, hclog.Warn)

	a.Info("entering follower state", "node", "n1")
	a.Warn("heartbeat timeout reached, starting election", "last-leader-id", "")
	if buf.Len() != 0 {
		t.Errorf("info and routine warnings passed: %q", buf.String())
	}
	a.Named("snapshots").With("id", "s1").Error("failed to open snapshot", "error", "CRC mismatch")
	out := buf.String()
	for _, want := range []string{"level=ERROR", `msg="failed to open snapshot"`, "component=raft.snapshots", "id=s1", `error="CRC mismatch"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if a.IsInfo() || !a.IsWarn() {
		t.Errorf("IsInfo = %v, IsWarn = %v at warn level", a.IsInfo(), a.IsWarn())
	}

	buf.Reset()
	a.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[WARN] raft: slow disk")
	a.StandardLogger(nil).Print("[WARN] dropped: info without inference")
	if out := buf.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, `msg="raft: slow disk"`) || strings.Contains(out, "dropped") {
		t.Errorf("standard logger output %q", out)
	}

	a.SetLevel(hclog.Debug)
	buf.Reset()
	a.Debug("now visible")
	if !strings.Contains(buf.String(), "now visible") || a.GetLevel() != hclog.Debug {
		t.Errorf("SetLevel(Debug) did not take: %q", buf.String())
	}
}
