package mcp

import (
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
)

func TestPlanStoreExpiresAndIsBounded(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ps := newPlanStore(func() time.Time { return now })
	p := ps.put(PlanRequest{Kind: PlanScale, Service: "web", Replicas: 2}, api.Plan{Service: "web"})
	if !planID.MatchString(p.ID) || !p.ExpiresAt.Equal(now.Add(planTTL)) {
		t.Fatalf("plan ID %q expires %v", p.ID, p.ExpiresAt)
	}
	got, err := ps.get(p.ID)
	if err != nil || got.req.Replicas != 2 || got.plan.ID != p.ID {
		t.Fatalf("get = %+v, %v", got, err)
	}
	now = now.Add(planTTL)
	if _, err := ps.get(p.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("expired plan: error %v, want not found", err)
	}

	first := ps.put(PlanRequest{Service: "a"}, api.Plan{}).ID
	for range maxPlans {
		ps.put(PlanRequest{Service: "b"}, api.Plan{})
	}
	if _, err := ps.get(first); !errdefs.IsNotFound(err) {
		t.Errorf("the oldest plan was kept beyond the bound of %d", maxPlans)
	}
	if n := len(ps.plans); n != maxPlans || len(ps.order) != maxPlans {
		t.Errorf("store holds %d plans (%d in order), want %d", n, len(ps.order), maxPlans)
	}
	last := ps.order[len(ps.order)-1]
	ps.drop(last)
	if _, err := ps.get(last); !errdefs.IsNotFound(err) {
		t.Errorf("a dropped plan is still there")
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"10m":                  now.Add(-10 * time.Minute),
		"0s":                   now,
		"2025-12-31T23:00:00Z": time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1m", "yesterday", "2025-13-01", string(make([]byte, 100))} {
		if _, err := parseSince(bad, now); !errdefs.IsInvalid(err) {
			t.Errorf("parseSince(%q) error = %v, want invalid", bad, err)
		}
	}
}
