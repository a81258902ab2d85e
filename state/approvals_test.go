package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestApprovalLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	ctx := context.Background()
	put := func(id string, ttl time.Duration) {
		apply(t, s, PutApproval{Approval: Approval{ID: id, Principal: "ci/1", Tool: "scale_service", ArgsHash: "h1", Rule: "prod"}, TTL: ttl})
	}
	put("a1", time.Hour)
	if _, err := s.Apply(ctx, PutApproval{Approval: Approval{ID: "a1", Principal: "x", Tool: "t", ArgsHash: "h"}, TTL: time.Hour}); !errdefs.IsConflict(err) {
		t.Fatalf("duplicate put: %v", err)
	}
	use := UseApproval{ID: "a1", Principal: "ci/1", Tool: "scale_service", ArgsHash: "h1"}
	if _, err := s.Apply(ctx, use); !errdefs.IsConflict(err) {
		t.Fatalf("use while pending: %v", err)
	}
	if _, err := s.Apply(ctx, DecideApproval{ID: "a1", Approve: true, By: "ci/1"}); !errors.Is(err, errdefs.ErrPermission) {
		t.Fatalf("self-approval: %v", err)
	}
	apply(t, s, DecideApproval{ID: "a1", Approve: true, By: "admin", Reason: "ok"})
	if _, err := s.Apply(ctx, DecideApproval{ID: "a1", Approve: false, By: "admin"}); !errdefs.IsConflict(err) {
		t.Fatalf("second decision: %v", err)
	}
	for _, bad := range []UseApproval{
		{ID: "a1", Principal: "other/2", Tool: "scale_service", ArgsHash: "h1"},
		{ID: "a1", Principal: "ci/1", Tool: "remove_service", ArgsHash: "h1"},
		{ID: "a1", Principal: "ci/1", Tool: "scale_service", ArgsHash: "h2"},
	} {
		if _, err := s.Apply(ctx, bad); !errors.Is(err, errdefs.ErrPermission) {
			t.Fatalf("use %+v: %v", bad, err)
		}
	}
	apply(t, s, use)
	if _, err := s.Apply(ctx, use); !errdefs.IsConflict(err) {
		t.Fatalf("second use: %v", err)
	}
	ap, err := s.Approval("a1")
	if err != nil || ap.State != ApprovalUsed || ap.DecidedBy != "admin" || ap.UsedAt.IsZero() {
		t.Fatalf("a1 = %+v, %v", ap, err)
	}

	put("a2", 50*time.Millisecond)
	time.Sleep(80 * time.Millisecond)
	if _, err := s.Apply(ctx, DecideApproval{ID: "a2", Approve: true, By: "admin"}); !errdefs.IsConflict(err) {
		t.Fatalf("approve expired: %v", err)
	}
	if got := s.Approvals(ApprovalExpired, time.Now()); len(got) != 1 || got[0].ID != "a2" {
		t.Fatalf("expired = %+v", got)
	}
	if _, err := s.Approval("nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("missing: %v", err)
	}

	// Approvals survive a snapshot and restart.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir)
	if got := s2.Approvals("", time.Now()); len(got) != 2 || got[0].ID != "a1" || got[0].State != ApprovalUsed {
		t.Fatalf("after restore = %+v", got)
	}
}
