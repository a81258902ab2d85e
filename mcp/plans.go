package mcp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// Kinds of change a PlanRequest asks for.
const (
	PlanDeploy   = "deploy"
	PlanScale    = "scale"
	PlanRemove   = "remove"
	PlanRestart  = "restart"
	PlanRollback = "rollback"
	// PlanDrain and PlanEligibility are about Node, not a service.
	PlanDrain       = "drain"
	PlanEligibility = "eligibility"
)

// PlanRequest is a change to plan: Kind and Service always, plus Spec for a
// deploy, Replicas for a scale and Version for a rollback; node plans set
// Node (and Eligible) instead of Service.
type PlanRequest struct {
	Kind     string
	Service  string
	Spec     *spec.Service
	Replicas int
	Version  int
	Node     string // PlanDrain, PlanEligibility
	Eligible bool   // PlanEligibility
}

// Planner computes what a change would do and applies it later. Plan
// changes nothing. ApplyPlan applies req only if the service is as plan saw
// it (plan.Base, its modify index, or its absence), and fails with an
// errdefs.ErrConflict error that tells what changed otherwise.
type Planner interface {
	Plan(ctx context.Context, req PlanRequest) (*api.Plan, error)
	ApplyPlan(ctx context.Context, req PlanRequest, plan *api.Plan) (*api.ApplyPlanResult, error)
}

// Plan store bounds: a plan is a short-lived proposal, not a record.
const (
	planTTL  = 15 * time.Minute
	maxPlans = 256
)

type storedPlan struct {
	req  PlanRequest
	plan api.Plan
}

// planStore keeps plans in memory until they expire, are applied or are
// pushed out by newer ones. Expiry is checked on access: no goroutine.
type planStore struct {
	mu    sync.Mutex
	now   func() time.Time
	plans map[string]*storedPlan
	order []string // IDs, oldest first
}

func newPlanStore(now func() time.Time) *planStore {
	if now == nil {
		now = time.Now
	}
	return &planStore{now: now, plans: map[string]*storedPlan{}}
}

// put stores plan for req and returns it with its ID and expiry set.
func (ps *planStore) put(req PlanRequest, plan api.Plan) api.Plan {
	var b [12]byte
	_, _ = rand.Read(b[:])
	plan.ID = "plan-" + hex.EncodeToString(b[:])
	ps.mu.Lock()
	defer ps.mu.Unlock()
	now := ps.now()
	plan.ExpiresAt = now.Add(planTTL).UTC()
	ps.expireLocked(now)
	for len(ps.order) >= maxPlans {
		delete(ps.plans, ps.order[0])
		ps.order = ps.order[1:]
	}
	ps.plans[plan.ID] = &storedPlan{req: req, plan: plan}
	ps.order = append(ps.order, plan.ID)
	return plan
}

func (ps *planStore) expireLocked(now time.Time) {
	n := 0
	for _, id := range ps.order {
		if p := ps.plans[id]; p != nil && now.Before(p.plan.ExpiresAt) {
			ps.order[n] = id
			n++
			continue
		}
		delete(ps.plans, id)
	}
	ps.order = ps.order[:n]
}

// get returns the plan called id, or an errdefs.ErrNotFound error.
func (ps *planStore) get(id string) (*storedPlan, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.expireLocked(ps.now())
	p := ps.plans[id]
	if p == nil {
		return nil, errdefs.WithHint(fmt.Errorf("plan %q: %w", id, errdefs.ErrNotFound),
			fmt.Sprintf("plans live for %v on the server that made them and are used once: make a new one with dry_run true", planTTL))
	}
	cp := *p
	return &cp, nil
}

// drop forgets a plan once applied.
func (ps *planStore) drop(id string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.plans, id)
	for i, o := range ps.order {
		if o == id {
			ps.order = append(ps.order[:i], ps.order[i+1:]...)
			break
		}
	}
}
