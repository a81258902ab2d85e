package state

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
	memdb "github.com/hashicorp/go-memdb"
)

// Spec version history: every version a service's spec has had, kept in the
// replicated state so that a rollback works on any server and survives
// restarts. The FSM records a row whenever a service's Version changes.

// MaxHistory is how many versions are kept per service; older ones are
// trimmed.
const MaxHistory = 20

const tableHistory = "history"

// Causes of a version, as recorded in SpecVersion.Cause.
const (
	CauseDeploy  = "deploy"
	CauseRestart = "restart"
)

// SpecVersion is one version of a service's spec.
type SpecVersion struct {
	Service string       `json:"service"`
	Version int          `json:"version"`
	Spec    spec.Service `json:"spec"`
	// Cause is CauseDeploy (a spec change), CauseRestart (same spec, new
	// version to roll the instances) or the cause a PutService gave (a
	// rollback's "rollback to version N", a cancelled deploy's revert).
	Cause string    `json:"cause"`
	Index uint64    `json:"index"` // Raft index that recorded it
	Time  time.Time `json:"time"`
}

func historyTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableHistory,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
				&memdb.StringFieldIndex{Field: "Service"},
				&memdb.IntFieldIndex{Field: "Version"},
			}}},
			indexService: {Name: indexService, Indexer: &memdb.StringFieldIndex{Field: "Service"}},
		},
	}
}

// RestartService bumps a service's Version without changing its spec, so
// the controller replaces its instances one at a time (a rolling restart).
// A missing service fails with errdefs.ErrNotFound.
type RestartService struct {
	Name string `json:"name"`
	// ExpectModifyIndex, when not 0, makes the restart conditional like
	// PutService's.
	ExpectModifyIndex uint64 `json:"expect_modify_index,omitempty"`
}

func (o RestartService) wrap() wireOp { return wireOp{RestartService: &o} }

func (o RestartService) validate() error {
	if o.Name == "" {
		return invalid("restart service: name is empty")
	}
	return nil
}

func (a *applier) restartService(op RestartService) error {
	old, _ := must(a.txn.First(tableServices, indexID, op.Name)).(*Service)
	switch {
	case old == nil:
		return fmt.Errorf("restart service %q: %w", op.Name, errdefs.ErrNotFound)
	case op.ExpectModifyIndex != 0 && old.ModifyIndex != op.ExpectModifyIndex:
		return errdefs.WithHint(fmt.Errorf("service %q: expected modify index %d, but it is %d: %w",
			op.Name, op.ExpectModifyIndex, old.ModifyIndex, errdefs.ErrConflict),
			"someone else changed the service; read it again and retry")
	}
	svc := *old
	svc.Version++
	svc.ModifyIndex = a.index
	svc.UpdatedAt = a.now
	a.insert(tableServices, &svc)
	a.putHistory(&svc, CauseRestart)
	return nil
}

// recordHistory stores svc's spec as a new version when its Version differs
// from old's (or old is nil), with cause (CauseDeploy when empty). Called by
// putService after the insert.
func (a *applier) recordHistory(svc, old *Service, cause string) {
	if old != nil && old.Version == svc.Version {
		return
	}
	if cause == "" {
		cause = CauseDeploy
	}
	a.putHistory(svc, cause)
}

func (a *applier) putHistory(svc *Service, cause string) {
	a.insert(tableHistory, &SpecVersion{Service: svc.Name, Version: svc.Version, Spec: svc.Spec,
		Cause: cause, Index: a.index, Time: a.now})
	rows := collect[SpecVersion](must(a.txn.Get(tableHistory, indexService, svc.Name)), nil)
	if len(rows) <= MaxHistory {
		return
	}
	slices.SortFunc(rows, func(x, y *SpecVersion) int { return cmp.Compare(x.Version, y.Version) })
	for _, r := range rows[:len(rows)-MaxHistory] {
		check(a.txn.Delete(tableHistory, r))
	}
}

// dropHistory deletes a service's history when its record is deleted: a
// service created again under the same name starts at version 1.
func (a *applier) dropHistory(name string) {
	_ = must(a.txn.DeleteAll(tableHistory, indexService, name))
}

// History returns the recorded spec versions of a service, oldest first. It
// is empty (not an error) for an unknown service.
func (s *Store) History(service string) []*SpecVersion {
	rows := collect[SpecVersion](must(s.txn().Get(tableHistory, indexService, service)), nil)
	slices.SortFunc(rows, func(x, y *SpecVersion) int { return cmp.Compare(x.Version, y.Version) })
	return cloneAll(rows)
}

// SpecAt returns version v of a service's spec, or an errdefs.ErrNotFound
// error when it was never recorded or has been trimmed.
func (s *Store) SpecAt(service string, v int) (*SpecVersion, error) {
	row, _ := must(s.txn().First(tableHistory, indexID, service, v)).(*SpecVersion)
	if row == nil {
		return nil, errdefs.WithHint(fmt.Errorf("version %d of service %q: %w", v, service, errdefs.ErrNotFound),
			fmt.Sprintf("list the versions kept (the last %d) with service_history", MaxHistory))
	}
	return clone(row), nil
}

// ServiceAbsent fails with errdefs.ErrConflict when the service exists. Put
// before a PutService in the same Apply, it makes a create conditional on
// the service still being absent (a plan made before it existed).
type ServiceAbsent struct {
	Name string `json:"name"`
}

func (o ServiceAbsent) wrap() wireOp { return wireOp{ServiceAbsent: &o} }

func (o ServiceAbsent) validate() error {
	if o.Name == "" {
		return invalid("service absent: name is empty")
	}
	return nil
}

func (a *applier) serviceAbsent(op ServiceAbsent) error {
	if old, _ := must(a.txn.First(tableServices, indexID, op.Name)).(*Service); old != nil {
		return errdefs.WithHint(fmt.Errorf("service %q exists (version %d, modify index %d): %w", op.Name, old.Version, old.ModifyIndex, errdefs.ErrConflict),
			"someone else created the service; read it again and retry")
	}
	return nil
}
