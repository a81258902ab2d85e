package state

import (
	"fmt"

	"github.com/gantry-dev/gantry/errdefs"
)

// ScaleService sets a service's replica count in one step inside the FSM,
// with a Scaled event naming the old and new counts. Unlike a PutService of
// a read-modified copy, it cannot conflict with a concurrent change to the
// service: two agents scaling at once both succeed and the later wins, as
// with Kubernetes' scale subresource. A service being removed, or a missing
// one, fails.
type ScaleService struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
}

func (o ScaleService) wrap() wireOp { return wireOp{ScaleService: &o} }

func (o ScaleService) validate() error {
	if o.Name == "" {
		return invalid("scale service: name is empty")
	}
	if o.Replicas < 0 || o.Replicas > 1000 {
		return invalid("scale service %q: replicas %d out of range 0 to 1000", o.Name, o.Replicas)
	}
	return nil
}

func (a *applier) scaleService(op ScaleService) error {
	old, _ := must(a.txn.First(tableServices, indexID, op.Name)).(*Service)
	switch {
	case old == nil:
		return fmt.Errorf("scale service %q: %w", op.Name, errdefs.ErrNotFound)
	case old.Removing:
		return errdefs.WithHint(fmt.Errorf("service %q is being removed: %w", op.Name, errdefs.ErrConflict),
			"wait until it is gone, then deploy it again")
	case old.Spec.Replicas == op.Replicas:
		return nil
	}
	svc := *old
	svc.Spec.Replicas = op.Replicas
	svc.ModifyIndex = a.index
	svc.UpdatedAt = a.now
	a.insert(tableServices, &svc)
	return a.appendEvent(AppendEvent{Event: Event{Service: op.Name, Type: "Scaled",
		Message: fmt.Sprintf("scaled from %d to %d replica(s)", old.Spec.Replicas, op.Replicas)}})
}
