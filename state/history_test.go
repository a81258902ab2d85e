package state

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

func historyVersions(s *Store, name string) []string {
	var out []string
	for _, h := range s.History(name) {
		out = append(out, fmt.Sprintf("%d:%s:%s", h.Version, h.Cause, h.Spec.Image))
	}
	return out
}

func TestHistoryRecordsEveryVersion(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1", 2)}})
	// A scale does not bump the version, so it records nothing.
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1", 5)}})
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:2", 5)}})
	svc, err := s.Service("web")
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, RestartService{Name: "web", ExpectModifyIndex: svc.ModifyIndex})

	got := fmt.Sprint(historyVersions(s, "web"))
	if want := "[1:deploy:busybox:1 2:deploy:busybox:2 3:restart:busybox:2]"; got != want {
		t.Fatalf("history = %s, want %s", got, want)
	}
	svc, _ = s.Service("web")
	if svc.Version != 3 || svc.Spec.Image != "busybox:2" {
		t.Errorf("after restart: version %d image %s, want 3 busybox:2", svc.Version, svc.Spec.Image)
	}
	v1, err := s.SpecAt("web", 1)
	if err != nil || v1.Spec.Image != "busybox:1" || v1.Spec.Replicas != 2 {
		t.Fatalf("SpecAt(1) = %+v, %v", v1, err)
	}
	if _, err := s.SpecAt("web", 9); !errdefs.IsNotFound(err) {
		t.Errorf("SpecAt(9) error = %v, want not found", err)
	}

	// A stale restart is refused and changes nothing.
	_, err = s.Apply(context.Background(), RestartService{Name: "web", ExpectModifyIndex: 1})
	if !errdefs.IsConflict(err) {
		t.Errorf("stale restart: error = %v, want conflict", err)
	}
	if _, err := s.Apply(context.Background(), RestartService{Name: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("restart of a missing service: error = %v, want not found", err)
	}
	if n := len(s.History("web")); n != 3 {
		t.Errorf("history has %d rows after refused restarts, want 3", n)
	}

	// Deleting the service drops its history.
	apply(t, s, DeleteService{Name: "web"})
	if h := s.History("web"); len(h) != 0 {
		t.Errorf("history after delete = %v, want empty", historyVersions(s, "web"))
	}
}

func TestHistoryIsBoundedAndSurvivesSnapshot(t *testing.T) {
	dir := t.TempDir()
	small := func(c *Config) { c.TrailingLogs = 1 }
	s := openStore(t, dir, small)
	for i := range MaxHistory + 5 {
		apply(t, s, PutService{Service: Service{Spec: webSpec(fmt.Sprintf("busybox:%d", i), 1)}})
	}
	h := s.History("web")
	if len(h) != MaxHistory || h[0].Version != 6 || h[len(h)-1].Version != MaxHistory+5 {
		t.Fatalf("history keeps %d versions from %d to %d, want %d from 6 to %d",
			len(h), h[0].Version, h[len(h)-1].Version, MaxHistory, MaxHistory+5)
	}
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(t, s, RestartService{Name: "web"})
	before := fmt.Sprint(historyVersions(s, "web"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, small)
	if after := fmt.Sprint(historyVersions(s2, "web")); after != before {
		t.Fatalf("history after restore:\n%s\nwant\n%s", after, before)
	}
}

func TestServiceAbsentMakesACreateConditional(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, ServiceAbsent{Name: "web"}, PutService{Service: Service{Spec: webSpec("busybox:1", 1)}})
	_, err := s.Apply(context.Background(), ServiceAbsent{Name: "web"}, PutService{Service: Service{Spec: webSpec("busybox:2", 1)}})
	if !errdefs.IsConflict(err) {
		t.Fatalf("second conditional create: error %v, want conflict", err)
	}
	if svc, _ := s.Service("web"); svc.Spec.Image != "busybox:1" || svc.Version != 1 {
		t.Errorf("a refused create changed the service: %+v", svc)
	}
}

// A deploy of a spec that live instances already run (a rollback, a
// cancelled deploy) moves them to the new version instead of leaving them
// outdated for the controller to replace; a restart still replaces them.
func TestRedeployOfARunningSpecKeepsItsInstances(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1", 2)}})
	apply(t, s, PutInstance{Instance: Instance{ID: "web-0-a", Service: "web", Slot: 0, SpecVersion: 1, Node: "n", Desired: DesiredRun}})
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:2", 2)}})
	apply(t, s, PutInstance{Instance: Instance{ID: "web-1-b", Service: "web", Slot: 1, SpecVersion: 2, Node: "n", Desired: DesiredRun}})
	apply(t, s, PutInstance{Instance: Instance{ID: "web-1-old", Service: "web", Slot: 1, SpecVersion: 1, Node: "n", Desired: DesiredStop}})
	versions := func() map[string]int {
		ins, _ := s.Instances(InstanceFilter{Service: "web"})
		m := map[string]int{}
		for _, in := range ins {
			m[in.ID] = in.SpecVersion
		}
		return m
	}
	if v := versions(); v["web-0-a"] != 1 || v["web-1-b"] != 2 {
		t.Fatalf("a new spec moved instances: %v", v)
	}
	// Back to busybox:1 (version 3), with another replica count.
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1", 3)}, Cause: "rollback to version 1"})
	svc, _ := s.Service("web")
	if v := versions(); svc.Version != 3 || v["web-0-a"] != 3 || v["web-1-b"] != 2 || v["web-1-old"] != 1 {
		t.Fatalf("after the rollback (version %d): %v; want web-0-a on 3, web-1-b on 2, the stopping web-1-old untouched", svc.Version, v)
	}
	apply(t, s, RestartService{Name: "web"})
	if v := versions(); v["web-0-a"] != 3 {
		t.Fatalf("a restart must leave instances on the old version to be replaced: %v", v)
	}
}

// ScaleService sets replicas inside the FSM: concurrent scales all succeed
// (the last applied wins), each records a Scaled event, and the version
// stays.
func TestScaleServiceNeverConflicts(t *testing.T) {
	s := openStore(t, t.TempDir())
	apply(t, s, PutService{Service: Service{Spec: webSpec("busybox:1", 1)}})
	errs := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := s.Apply(t.Context(), ScaleService{Name: "web", Replicas: i + 2})
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent scale: %v", err)
		}
	}
	svc, _ := s.Service("web")
	if svc.Version != 1 || svc.Spec.Replicas < 2 || svc.Spec.Replicas > 21 {
		t.Fatalf("after the scales: version %d replicas %d", svc.Version, svc.Spec.Replicas)
	}
	var evs []*Event
	for _, e := range s.Events(EventFilter{Service: "web"}) {
		if e.Type == "Scaled" {
			evs = append(evs, e)
		}
	}
	if len(evs) == 0 || len(evs) > 20 || !strings.Contains(evs[0].Message, "scaled from 1 to") {
		t.Fatalf("Scaled events: %+v", evs)
	}
	if _, err := s.Apply(t.Context(), ScaleService{Name: "nope", Replicas: 1}); !errdefs.IsNotFound(err) {
		t.Errorf("scale of a missing service: %v", err)
	}
	if _, err := s.Apply(t.Context(), ScaleService{Name: "web", Replicas: 1001}); !errdefs.IsInvalid(err) {
		t.Errorf("scale to 1001: %v", err)
	}
}
