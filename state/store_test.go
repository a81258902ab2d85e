package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openStore opens a store in dir and closes it when the test ends.
func openStore(t testing.TB, dir string, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{DataDir: dir, NodeID: "node-1", Logger: testLogger(t)}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Logf("Open took %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func apply(t testing.TB, s *Store, ops ...Op) uint64 {
	t.Helper()
	idx, err := s.Apply(context.Background(), ops...)
	if err != nil {
		t.Fatalf("Apply(%v): %v", ops, err)
	}
	return idx
}

func webSpec(image string, replicas int) spec.Service {
	grace := spec.Duration(5 * time.Second)
	init := false
	return spec.Service{
		Name: "web", Image: image, Replicas: replicas,
		Command: []string{"httpd", "-f"},
		Env:     map[string]string{"PORT": "8080"},
		Ports:   []spec.Port{{Name: "http", Port: 8080}},
		Resources: spec.Resources{
			CPU: 250, Memory: 64 << 20,
		},
		Restart: spec.RestartOnFailure,
		Stop:    spec.Stop{Signal: "SIGTERM", Grace: grace},
		Health:  &spec.Health{HTTP: &spec.HTTPCheck{Port: "http", Path: "/"}, Failures: 3},
		Init:    &init,
	}
}

// populate writes one of everything.
func populate(t testing.TB, s *Store) {
	t.Helper()
	apply(t, s,
		PutNode{Node: Node{ID: "node-1", Name: "dev", CPU: 2000, Memory: 4 << 30, Labels: map[string]string{"zone": "a"}}},
		PutService{Service: Service{Spec: webSpec("busybox:1.36", 2)}},
		PutService{Service: Service{Name: "db", Spec: spec.Service{Image: "postgres:16", Replicas: 1}}},
	)
	for slot := range 2 {
		id := fmt.Sprintf("web-%d-abc", slot)
		apply(t, s, PutInstance{Instance: Instance{ID: id, Service: "web", Slot: slot, SpecVersion: 1, Node: "node-1"}})
		apply(t, s, SetInstanceStatus{ID: id, Status: InstanceStatus{
			State: StateRunning, PID: 100 + slot, IP: "10.88.0.2", Ports: map[string]int{"http": 30000 + slot},
			LastExit: &Exit{Code: 137, Signal: "SIGKILL", Reason: "OOMKilled", At: time.Unix(1700000000, 0).UTC()},
		}})
		apply(t, s, AppendEvent{Event: Event{Service: "web", Instance: id, Type: "Started", Message: "started"}})
	}
	apply(t, s, PutInstance{Instance: Instance{ID: "db-0-xyz", Service: "db", Slot: 0}})
}

// dump is every table, for comparing states.
type dump struct {
	Index     uint64
	Services  []*Service
	Instances []*Instance
	Nodes     []*Node
	Events    []*Event
}

func dumpState(s *Store) string {
	var d dump
	d.Services, d.Index = s.Services()
	d.Instances, _ = s.Instances(InstanceFilter{})
	d.Nodes, _ = s.Nodes()
	d.Events = s.Events(EventFilter{})
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	populate(t, s)

	svc, err := s.Service("web")
	if err != nil {
		t.Fatal(err)
	}
	if svc.Version != 1 || svc.CreateIndex == 0 || svc.ModifyIndex != svc.CreateIndex || svc.CreatedAt.IsZero() {
		t.Errorf("web bookkeeping = version %d, create %d, modify %d, created %v", svc.Version, svc.CreateIndex, svc.ModifyIndex, svc.CreatedAt)
	}
	if svc.Name != "web" || svc.Spec.Health == nil || svc.Spec.Health.HTTP.Path != "/" || svc.Spec.Stop.Grace.D() != 5*time.Second {
		t.Errorf("web spec did not survive the log: %+v", svc.Spec)
	}
	in, err := s.Instance("web-1-abc")
	if err != nil {
		t.Fatal(err)
	}
	if in.State != StateRunning || in.Desired != DesiredRun || in.Ports["http"] != 30001 || in.LastExit.Reason != "OOMKilled" {
		t.Errorf("instance = %+v", in)
	}
	n, err := s.Node("node-1")
	if err != nil {
		t.Fatal(err)
	}
	if n.Status != "ready" || n.JoinedAt.IsZero() || n.Labels["zone"] != "a" {
		t.Errorf("node = %+v", n)
	}
	if evs := s.Events(EventFilter{}); len(evs) != 2 || evs[0].Seq == 0 || evs[0].Time.IsZero() {
		t.Errorf("events = %+v", evs)
	}

	before := dumpState(s)
	idx := s.Index()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, dir)
	if after := dumpState(s2); after != before {
		t.Fatalf("state after reopen differs:\nbefore: %s\nafter: %s", before, after)
	}
	if got := s2.Index(); got != idx {
		t.Errorf("Index after reopen = %d, want %d", got, idx)
	}
	next := apply(t, s2, AppendEvent{Event: Event{Type: "Restarted"}})
	if next <= idx {
		t.Errorf("index after reopen = %d, want > %d", next, idx)
	}
}

func TestSnapshotAndLogTail(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) { c.TrailingLogs = 1; c.MaxEvents = 3 }
	s := openStore(t, dir, small)
	populate(t, s)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	// The tail: changes and deletions after the snapshot.
	apply(t, s, SetInstanceDesired{ID: "web-0-abc", Desired: DesiredStop})
	apply(t, s, DeleteInstance{ID: "db-0-xyz"}, DeleteService{Name: "db"})
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1.37", 3)}})
	for i := range 3 {
		apply(t, s, AppendEvent{Event: Event{Service: "web", Type: "Scaled", Message: fmt.Sprint(i)}})
	}
	first, err := s.bolt.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 {
		t.Errorf("log was not compacted after the snapshot: first index %d", first)
	}
	before := dumpState(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if snaps := finishedSnapshots(t, dir); len(snaps) != 1 {
		t.Fatalf("snapshots on disk = %v; want 1", snaps)
	}

	s2 := openStore(t, dir, small)
	if after := dumpState(s2); after != before {
		t.Fatalf("state after restore differs:\nbefore: %s\nafter: %s", before, after)
	}
	// Event numbering continues past the restored events.
	last := s2.Events(EventFilter{})
	idx := apply(t, s2, AppendEvent{Event: Event{Type: "X"}})
	evs := s2.Events(EventFilter{After: last[len(last)-1].Seq})
	if len(evs) != 1 || evs[0].Seq != idx {
		t.Errorf("event after restore = %+v, want seq %d", evs, idx)
	}
}

// finishedSnapshots lists the snapshots in dir. Those being written end in
// .tmp; the store reaps old ones only after finishing a new one.
func finishedSnapshots(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestAutomaticSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, func(c *Config) {
		c.SnapshotThreshold = 5
		c.SnapshotInterval = 10 * time.Millisecond
		c.TrailingLogs = 2
	})
	for i := range 20 {
		apply(t, s, PutNode{Node: Node{ID: fmt.Sprintf("n%d", i)}})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if snaps := finishedSnapshots(t, dir); len(snaps) > 0 {
			if len(snaps) > snapshotsRetained {
				t.Errorf("%d snapshots kept, want at most %d", len(snaps), snapshotsRetained)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot taken after 20 entries with threshold 5")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if nodes, _ := s.Nodes(); len(nodes) != 20 {
		t.Errorf("%d nodes, want 20", len(nodes))
	}
}

func TestPutServiceCASAndVersion(t *testing.T) {
	s := openStore(t, t.TempDir())
	i1 := apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1.36", 1)}})

	// Scale: no new version.
	i2 := apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1.36", 3)}, ExpectModifyIndex: i1})
	svc, _ := s.Service("web")
	if svc.Version != 1 || svc.ModifyIndex != i2 || svc.CreateIndex != i1 || svc.Spec.Replicas != 3 {
		t.Errorf("after scale: version %d modify %d create %d replicas %d", svc.Version, svc.ModifyIndex, svc.CreateIndex, svc.Spec.Replicas)
	}

	// Stale index: conflict, naming both indexes, nothing written.
	_, err := s.Apply(context.Background(), PutService{Service: Service{Spec: webSpec("busybox:1.37", 3)}, ExpectModifyIndex: i1})
	if !errdefs.IsConflict(err) {
		t.Fatalf("stale CAS err = %v, want conflict", err)
	}
	if msg := err.Error(); !strings.Contains(msg, fmt.Sprint(i1)) || !strings.Contains(msg, fmt.Sprint(i2)) {
		t.Errorf("conflict message %q does not name both indexes %d and %d", msg, i1, i2)
	}
	if s.Index() != i2 {
		t.Errorf("failed CAS changed the index: %d, want %d", s.Index(), i2)
	}

	// Image change: new version.
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1.37", 3)}, ExpectModifyIndex: i2})
	if svc, _ := s.Service("web"); svc.Version != 2 || svc.Spec.Image != "busybox:1.37" {
		t.Errorf("after image change: version %d image %q", svc.Version, svc.Spec.Image)
	}

	// CAS against a missing service.
	_, err = s.Apply(context.Background(), PutService{Service: Service{Name: "nope"}, ExpectModifyIndex: 7})
	if !errdefs.IsConflict(err) {
		t.Errorf("CAS on missing service err = %v, want conflict", err)
	}
}

func TestDeleteService(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, PutService{Service: Service{Name: "a"}}, PutService{Service: Service{Name: "b"}})
	apply(t, s, DeleteService{Name: "a"})
	if _, err := s.Service("a"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("Service(a) after delete err = %v, want not found naming it", err)
	}
	svcs, _ := s.Services()
	if len(svcs) != 1 || svcs[0].Name != "b" {
		t.Errorf("Services = %v, want [b]", svcs)
	}
	if _, err := s.Apply(context.Background(), DeleteService{Name: "a"}); !errdefs.IsNotFound(err) {
		t.Errorf("second delete err = %v, want not found", err)
	}
}

func TestAtomicApply(t *testing.T) {
	s := openStore(t, t.TempDir())
	idx := apply(t, s, PutService{Service: Service{Name: "a"}})
	_, err := s.Apply(context.Background(),
		PutService{Service: Service{Name: "b"}},
		PutInstance{Instance: Instance{ID: "b-0", Service: "b"}},
		SetInstanceDesired{ID: "missing", Desired: DesiredStop},
	)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("err = %v, want not found", err)
	}
	if _, err := s.Service("b"); !errdefs.IsNotFound(err) {
		t.Errorf("service b exists after a failed command: %v", err)
	}
	if _, err := s.Instance("b-0"); !errdefs.IsNotFound(err) {
		t.Errorf("instance b-0 exists after a failed command: %v", err)
	}
	if s.Index() != idx {
		t.Errorf("Index = %d after a failed command, want %d", s.Index(), idx)
	}
}

func TestValidation(t *testing.T) {
	s := openStore(t, t.TempDir())
	idx := s.Index()
	for _, op := range []Op{
		PutService{},
		PutService{Service: Service{Name: "a", Spec: spec.Service{Name: "b"}}},
		DeleteService{},
		PutInstance{Instance: Instance{Service: "a"}},
		PutInstance{Instance: Instance{ID: "x"}},
		PutInstance{Instance: Instance{ID: "x", Service: "a", Slot: -1}},
		PutInstance{Instance: Instance{ID: "x", Service: "a", Desired: "dance"}},
		SetInstanceDesired{ID: "x", Desired: "maybe"},
		SetInstanceStatus{},
		DeleteInstance{},
		PutNode{},
		AppendEvent{},
		nil,
	} {
		if _, err := s.Apply(context.Background(), op); !errdefs.IsInvalid(err) {
			t.Errorf("Apply(%#v) err = %v, want invalid", op, err)
		}
	}
	if _, err := s.Apply(context.Background()); !errdefs.IsInvalid(err) {
		t.Errorf("Apply() err = %v, want invalid", err)
	}
	if s.Index() != idx {
		t.Errorf("invalid ops reached the log: index %d, want %d", s.Index(), idx)
	}
}

func TestInstanceFiltersAndSlots(t *testing.T) {
	s := openStore(t, t.TempDir())
	put := func(id, svc string, slot int, node string) Op {
		return PutInstance{Instance: Instance{ID: id, Service: svc, Slot: slot, Node: node}}
	}
	apply(t, s,
		put("web-1-b", "web", 1, "n2"),
		put("web-0-a", "web", 0, "n1"),
		put("web-0-c", "web", 0, "n2"), // successor sharing slot 0
		put("api-0-a", "api", 0, "n1"),
		put("web-2-d", "web", 2, ""), // not placed yet
		put("webapp-0-a", "webapp", 0, "n1"),
	)
	ids := func(ins []*Instance) string {
		var out []string
		for _, in := range ins {
			out = append(out, in.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		f    InstanceFilter
		want string
	}{
		{InstanceFilter{}, "api-0-a,web-0-a,web-0-c,web-1-b,web-2-d,webapp-0-a"},
		{InstanceFilter{Service: "web"}, "web-0-a,web-0-c,web-1-b,web-2-d"},
		{InstanceFilter{Node: "n1"}, "api-0-a,web-0-a,webapp-0-a"},
		{InstanceFilter{Service: "web", Node: "n2"}, "web-0-c,web-1-b"},
		{InstanceFilter{Service: "nope"}, ""},
	} {
		got, idx := s.Instances(tc.f)
		if ids(got) != tc.want || idx != s.Index() {
			t.Errorf("Instances(%+v) = %s @%d, want %s @%d", tc.f, ids(got), idx, tc.want, s.Index())
		}
	}
	if got := ids(s.InstancesInSlot("web", 0)); got != "web-0-a,web-0-c" {
		t.Errorf("InstancesInSlot(web, 0) = %s", got)
	}
	if got := ids(s.InstancesInSlot("web", 2)); got != "web-2-d" {
		t.Errorf("InstancesInSlot(web, 2) = %s", got)
	}
	if got := s.InstancesInSlot("web", 3); len(got) != 0 {
		t.Errorf("InstancesInSlot(web, 3) = %s, want none", ids(got))
	}
	// Moving an instance updates the indexes.
	apply(t, s, put("web-2-d", "web", 2, "n1"))
	if got, _ := s.Instances(InstanceFilter{Node: "n1"}); ids(got) != "api-0-a,web-0-a,web-2-d,webapp-0-a" {
		t.Errorf("after placing web-2-d: %s", ids(got))
	}
	apply(t, s, DeleteInstance{ID: "web-0-a"})
	if got := ids(s.InstancesInSlot("web", 0)); got != "web-0-c" {
		t.Errorf("InstancesInSlot(web, 0) after delete = %s", got)
	}
}

func TestStatusAndDesiredAreSeparate(t *testing.T) {
	s := openStore(t, t.TempDir())
	i1 := apply(t, s, PutInstance{Instance: Instance{ID: "web-0", Service: "web", Node: "n1", SpecVersion: 1}})
	in, _ := s.Instance("web-0")
	if in.State != StatePending || in.Desired != DesiredRun || in.CreateIndex != i1 {
		t.Fatalf("new instance = %+v", in)
	}

	running := InstanceStatus{State: StateRunning, PID: 42, Restarts: 2, Healthy: true}
	apply(t, s, SetInstanceStatus{ID: "web-0", Status: running})
	apply(t, s, SetInstanceDesired{ID: "web-0", Desired: DesiredStop})
	in, _ = s.Instance("web-0")
	if in.Desired != DesiredStop || in.State != StateRunning || in.PID != 42 || in.Restarts != 2 {
		t.Errorf("SetInstanceDesired clobbered the status: %+v", in)
	}

	i4 := apply(t, s, SetInstanceStatus{ID: "web-0", Status: InstanceStatus{State: StateStopping, PID: 42}})
	in, _ = s.Instance("web-0")
	if in.Desired != DesiredStop || in.State != StateStopping || in.Node != "n1" || in.SpecVersion != 1 {
		t.Errorf("SetInstanceStatus clobbered the desired fields: %+v", in)
	}
	if in.ModifyIndex != i4 || in.CreateIndex != i1 {
		t.Errorf("indexes = create %d modify %d, want %d %d", in.CreateIndex, in.ModifyIndex, i1, i4)
	}

	// PutInstance keeps the status unless told to replace it.
	apply(t, s, PutInstance{Instance: Instance{ID: "web-0", Service: "web", Node: "n1", SpecVersion: 2}})
	in, _ = s.Instance("web-0")
	if in.State != StateStopping || in.SpecVersion != 2 || in.Desired != DesiredRun || in.CreateIndex != i1 {
		t.Errorf("PutInstance over existing = %+v", in)
	}
	apply(t, s, PutInstance{Instance: Instance{ID: "web-0", Service: "web", Node: "n1"}, ReplaceStatus: true})
	if in, _ = s.Instance("web-0"); in.State != StatePending || in.PID != 0 {
		t.Errorf("PutInstance with ReplaceStatus = %+v", in)
	}

	// A status for a removed instance is skipped and reported.
	res, err := s.ApplyWithResult(context.Background(),
		SetInstanceStatus{ID: "gone", Status: running},
		SetInstanceStatus{ID: "web-0", Status: running},
		DeleteInstance{ID: "gone-too"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Skipped, ",") != "gone,gone-too" || res.Index != s.Index() {
		t.Errorf("result = %+v, want gone,gone-too skipped at %d", res, s.Index())
	}
	if in, _ = s.Instance("web-0"); in.State != StateRunning {
		t.Errorf("status in the same command as a skipped one was not applied: %+v", in)
	}
	if _, err := s.Apply(context.Background(), SetInstanceDesired{ID: "gone", Desired: DesiredStop}); !errdefs.IsNotFound(err) {
		t.Errorf("SetInstanceDesired on missing err = %v, want not found", err)
	}
}

func TestNotify(t *testing.T) {
	s := openStore(t, t.TempDir())
	ch := s.Notify()
	select {
	case <-ch:
		t.Fatal("Notify channel closed with no change")
	default:
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ch
	}()
	apply(t, s, PutNode{Node: Node{ID: "n1"}})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify channel not closed after a change")
	}
	ch = s.Notify()
	// A failed command changes nothing and wakes no one.
	if _, err := s.Apply(context.Background(), DeleteService{Name: "nope"}); err == nil {
		t.Fatal("delete of a missing service succeeded")
	}
	select {
	case <-ch:
		t.Error("Notify channel closed by a failed command")
	default:
	}
}

func TestConcurrentApply(t *testing.T) {
	s := openStore(t, t.TempDir())
	const writers, each = 8, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]bool{}
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("svc%d-%d", w, i)
				idx, err := s.Apply(context.Background(),
					PutInstance{Instance: Instance{ID: id, Service: fmt.Sprintf("svc%d", w), Slot: i}},
					AppendEvent{Event: Event{Service: fmt.Sprintf("svc%d", w), Instance: id, Type: "Placed"}},
				)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seen[idx] = true
				mu.Unlock()
				s.Instances(InstanceFilter{Service: fmt.Sprintf("svc%d", w)}) // reads race with writes
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct indexes, want %d", len(seen), writers*each)
	}
	if ins, _ := s.Instances(InstanceFilter{}); len(ins) != writers*each {
		t.Errorf("%d instances, want %d", len(ins), writers*each)
	}
	if evs := s.Events(EventFilter{Service: "svc3"}); len(evs) != each {
		t.Errorf("%d events for svc3, want %d", len(evs), each)
	}
}

func TestEventsTrimAndFilter(t *testing.T) {
	s := openStore(t, t.TempDir(), func(c *Config) { c.MaxEvents = 10 })
	for i := range 8 {
		apply(t, s, AppendEvent{Event: Event{Service: "web", Instance: fmt.Sprintf("web-%d", i%2), Type: "Started", Message: fmt.Sprint(i)}})
	}
	// Several events in one entry get distinct, increasing seqs.
	var many []Op
	for i := 8; i < 25; i++ {
		many = append(many, AppendEvent{Event: Event{Service: "api", Type: "Started", Message: fmt.Sprint(i)}})
	}
	idx := apply(t, s, many...)
	idx2 := apply(t, s, AppendEvent{Event: Event{Service: "web", Instance: "web-1", Type: "Exited", Message: "25"}})

	all := s.Events(EventFilter{})
	if len(all) != 10 {
		t.Fatalf("%d events kept, want 10", len(all))
	}
	for i, e := range all {
		if want := fmt.Sprint(16 + i); e.Message != want {
			t.Errorf("event %d message %q, want %q (oldest trimmed first)", i, e.Message, want)
		}
		if i > 0 && e.Seq <= all[i-1].Seq {
			t.Errorf("seqs not increasing: %d after %d", e.Seq, all[i-1].Seq)
		}
	}
	if all[0].Seq < idx || all[len(all)-1].Seq <= idx2-1 {
		t.Errorf("seqs %d..%d, entries at %d and %d", all[0].Seq, all[len(all)-1].Seq, idx, idx2)
	}
	if got := s.Events(EventFilter{Service: "web"}); len(got) != 1 || got[0].Message != "25" {
		t.Errorf("web events = %+v", got)
	}
	if got := s.Events(EventFilter{Instance: "web-1"}); len(got) != 1 {
		t.Errorf("web-1 events = %+v", got)
	}
	if got := s.Events(EventFilter{Limit: 3}); len(got) != 3 || got[2].Message != "25" || got[0].Message != "23" {
		t.Errorf("last 3 events = %+v", got)
	}
	if got := s.Events(EventFilter{After: all[7].Seq}); len(got) != 2 || got[0].Seq != all[8].Seq {
		t.Errorf("events after %d = %+v", all[7].Seq, got)
	}
	if got := s.Events(EventFilter{Service: "api", After: all[7].Seq}); len(got) != 1 {
		t.Errorf("api events after %d = %+v", all[7].Seq, got)
	}
}

func TestReadsReturnCopies(t *testing.T) {
	s := openStore(t, t.TempDir())
	populate(t, s)
	svc, _ := s.Service("web")
	svc.Spec.Env["PORT"] = "1"
	svc.Spec.Health.HTTP.Path = "/changed"
	*svc.Spec.Init = true
	ins, _ := s.Instances(InstanceFilter{Service: "web"})
	ins[0].Ports["http"] = 1
	ins[0].LastExit.Code = 0
	nodes, _ := s.Nodes()
	nodes[0].Labels["zone"] = "b"

	svc, _ = s.Service("web")
	if svc.Spec.Env["PORT"] != "8080" || svc.Spec.Health.HTTP.Path != "/" || *svc.Spec.Init {
		t.Errorf("service changed through a returned copy: %+v", svc.Spec)
	}
	in, _ := s.Instance(ins[0].ID)
	if in.Ports["http"] != 30000 || in.LastExit.Code != 137 {
		t.Errorf("instance changed through a returned copy: %+v", in)
	}
	if n, _ := s.Node("node-1"); n.Labels["zone"] != "a" {
		t.Errorf("node changed through a returned copy: %+v", n)
	}
}

func TestCloseTwiceAndApplyAfterClose(t *testing.T) {
	s := openStore(t, t.TempDir())
	populate(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Apply(context.Background(), PutNode{Node: Node{ID: "x"}}); !errdefs.IsUnavailable(err) {
		t.Errorf("Apply after Close err = %v, want unavailable", err)
	}
	if _, err := s.Service("web"); err != nil {
		t.Errorf("read after Close: %v", err)
	}
}

func TestApplyCancelled(t *testing.T) {
	s := openStore(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Apply(ctx, PutNode{Node: Node{ID: "x"}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled ctx err = %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Apply(ctx, PutNode{Node: Node{ID: "y"}}); err != nil {
		t.Errorf("Apply with a deadline: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(cfg Config) error {
		t.Helper()
		cfg.Logger = testLogger(t)
		s, err := Open(ctx, cfg)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%+v) succeeded", cfg)
		}
		t.Logf("Open error: %v", err)
		return err
	}

	t.Run("missing config", func(t *testing.T) {
		if err := open(Config{NodeID: "n"}); !errdefs.IsInvalid(err) {
			t.Errorf("no data dir: err = %v, want invalid", err)
		}
		if err := open(Config{DataDir: t.TempDir()}); !errdefs.IsInvalid(err) {
			t.Errorf("no node id: err = %v, want invalid", err)
		}
	})
	t.Run("data dir is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := open(Config{DataDir: file, NodeID: "n"}); !strings.Contains(err.Error(), "data-dir") {
			t.Errorf("err = %v, want a hint about --data-dir", err)
		}
	})
	t.Run("unwritable raft dir", func(t *testing.T) {
		dir := t.TempDir()
		// A file where the snapshots directory belongs (chmod does not stop root).
		if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "raft", "snapshots"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := open(Config{DataDir: dir, NodeID: "n"}); !strings.Contains(err.Error(), "snapshots") {
			t.Errorf("err = %v, want it to name the snapshots dir", err)
		}
	})
	t.Run("corrupt raft.db", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
			t.Fatal(err)
		}
		junk := []byte(strings.Repeat("not a bolt database ", 1000))
		if err := os.WriteFile(filepath.Join(dir, "raft", "raft.db"), junk, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := open(Config{DataDir: dir, NodeID: "n"}); !strings.Contains(err.Error(), "raft.db") {
			t.Errorf("err = %v, want it to name raft.db", err)
		}
	})
	t.Run("corrupt snapshot", func(t *testing.T) {
		dir := t.TempDir()
		s := openStore(t, dir)
		populate(t, s)
		if err := s.raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
		s.Close()
		states, _ := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*", "state.bin"))
		if len(states) != 1 {
			t.Fatalf("snapshot files = %v", states)
		}
		if err := os.WriteFile(states[0], []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := open(Config{DataDir: dir, NodeID: "node-1"}); !strings.Contains(err.Error(), "snapshot") {
			t.Errorf("err = %v, want it to mention the snapshot", err)
		}
	})
	t.Run("locked by another store", func(t *testing.T) {
		dir := t.TempDir()
		openStore(t, dir)
		if err := open(Config{DataDir: dir, NodeID: "node-1"}); !errdefs.IsUnavailable(err) {
			t.Errorf("err = %v, want unavailable", err)
		}
	})
	t.Run("ctx ends before leadership", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s, err := Open(ctx, Config{DataDir: t.TempDir(), NodeID: "n", Logger: testLogger(t)})
		if err == nil {
			s.Close()
			t.Fatal("Open with a cancelled ctx succeeded")
		}
		if !errors.Is(err, context.Canceled) || !errdefs.IsUnavailable(err) {
			t.Errorf("err = %v, want context.Canceled and unavailable", err)
		}
	})
	t.Run("other node id", func(t *testing.T) {
		dir := t.TempDir()
		openStore(t, dir).Close()
		if err := open(Config{DataDir: dir, NodeID: "node-2"}); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "node-1") {
			t.Errorf("err = %v, want invalid naming node-1", err)
		}
	})
}
