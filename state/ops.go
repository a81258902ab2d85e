package state

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
)

// Op is one change to the state. A call to Store.Apply turns its ops into one
// Raft log entry that the FSM applies atomically: all of them or none.
//
// The concrete ops are PutService, DeleteService, PutInstance,
// SetInstanceDesired, SetInstanceStatus, DeleteInstance, PutNode and
// AppendEvent.
type Op interface {
	// validate checks what can be checked without the state, so that a bad
	// op fails before it costs a log entry. The FSM checks it again.
	validate() error
	// wrap puts the op in its slot of the wire union.
	wrap() wireOp
}

// PutService creates or replaces a service. The FSM owns the bookkeeping
// fields: it stamps CreateIndex, ModifyIndex, CreatedAt and UpdatedAt, and
// bumps Version when the spec changes in anything but Replicas.
type PutService struct {
	Service Service `json:"service"`
	// ExpectModifyIndex, when not 0, makes the put conditional: it fails with
	// errdefs.ErrConflict unless the stored service has this ModifyIndex.
	ExpectModifyIndex uint64 `json:"expect_modify_index,omitempty"`
	// Cause, when set, is recorded in the history instead of CauseDeploy
	// when the put makes a new version (e.g. "deploy of version 4 cancelled").
	Cause string `json:"cause,omitempty"`
}

// DeleteService removes a service record. It does not touch the service's
// instances: the controller stops and removes them. Deleting a missing
// service fails with errdefs.ErrNotFound.
type DeleteService struct {
	Name string `json:"name"`
}

// PutInstance creates or replaces an instance's desired fields. When the
// instance exists, its observed InstanceStatus is kept unless ReplaceStatus
// is set. A new instance with no Desired runs; with no State it is pending.
type PutInstance struct {
	Instance      Instance `json:"instance"`
	ReplaceStatus bool     `json:"replace_status,omitempty"`
}

// SetInstanceDesired changes only an instance's desired state (DesiredRun or
// DesiredStop). A missing instance fails with errdefs.ErrNotFound.
type SetInstanceDesired struct {
	ID      string `json:"id"`
	Desired string `json:"desired"`
}

// SetInstanceStatus replaces only an instance's observed fields. A missing
// instance is not an error (it may have been removed concurrently): the op is
// skipped and its ID reported in Result.Skipped.
type SetInstanceStatus struct {
	ID     string         `json:"id"`
	Status InstanceStatus `json:"status"`
}

// DeleteInstance removes an instance record. Like SetInstanceStatus, a missing
// instance is skipped and reported in Result.Skipped.
type DeleteInstance struct {
	ID string `json:"id"`
}

// PutNode creates or replaces a node. The FSM keeps the JoinedAt of an
// existing node (or stamps it on a new one), sets SeenAt to the time of the
// write and ModifyIndex to its index. An empty Status means "ready".
type PutNode struct {
	Node Node `json:"node"`
}

// AppendEvent records an event. The FSM sets Seq to the Raft index of the
// entry (or, when one entry appends several events, to the next free number,
// so Seq stays unique and increasing), fills in Time when it is zero, and
// trims the oldest events beyond the configured maximum.
type AppendEvent struct {
	Event Event `json:"event"`
}

// Result is what an applied command did.
type Result struct {
	// Index is the Raft index of the entry.
	Index uint64
	// Skipped holds the IDs of instances that SetInstanceStatus or
	// DeleteInstance ops found missing; those ops did nothing.
	Skipped []string
}

// wireOp is the tagged union an op is encoded as: exactly one field is set.
// A union of pointers keeps encoding to a single json.Marshal, with no
// second pass over json.RawMessage.
type wireOp struct {
	PutService         *PutService         `json:"put_service,omitempty"`
	DeleteService      *DeleteService      `json:"delete_service,omitempty"`
	PutInstance        *PutInstance        `json:"put_instance,omitempty"`
	SetInstanceDesired *SetInstanceDesired `json:"set_instance_desired,omitempty"`
	SetInstanceStatus  *SetInstanceStatus  `json:"set_instance_status,omitempty"`
	DeleteInstance     *DeleteInstance     `json:"delete_instance,omitempty"`
	PutNode            *PutNode            `json:"put_node,omitempty"`
	AppendEvent        *AppendEvent        `json:"append_event,omitempty"`
	PutToken           *PutToken           `json:"put_token,omitempty"`
	RevokeToken        *RevokeToken        `json:"revoke_token,omitempty"`
	AppendAudit        *AppendAudit        `json:"append_audit,omitempty"`
	RestartService     *RestartService     `json:"restart_service,omitempty"`
	SetNodeScheduling  *SetNodeScheduling  `json:"set_node_scheduling,omitempty"`
	ServiceAbsent      *ServiceAbsent      `json:"service_absent,omitempty"`
	PutApproval        *PutApproval        `json:"put_approval,omitempty"`
	DecideApproval     *DecideApproval     `json:"decide_approval,omitempty"`
	UseApproval        *UseApproval        `json:"use_approval,omitempty"`
	PutSecret          *PutSecret          `json:"put_secret,omitempty"`
	DeleteSecret       *DeleteSecret       `json:"delete_secret,omitempty"`
	PutJoinToken       *PutJoinToken       `json:"put_join_token,omitempty"`
	RevokeJoinToken    *RevokeJoinToken    `json:"revoke_join_token,omitempty"`
	UseJoinToken       *UseJoinToken       `json:"use_join_token,omitempty"`
	ScaleService       *ScaleService       `json:"scale_service,omitempty"`
}

func (o PutService) wrap() wireOp         { return wireOp{PutService: &o} }
func (o DeleteService) wrap() wireOp      { return wireOp{DeleteService: &o} }
func (o PutInstance) wrap() wireOp        { return wireOp{PutInstance: &o} }
func (o SetInstanceDesired) wrap() wireOp { return wireOp{SetInstanceDesired: &o} }
func (o SetInstanceStatus) wrap() wireOp  { return wireOp{SetInstanceStatus: &o} }
func (o DeleteInstance) wrap() wireOp     { return wireOp{DeleteInstance: &o} }
func (o PutNode) wrap() wireOp            { return wireOp{PutNode: &o} }
func (o AppendEvent) wrap() wireOp        { return wireOp{AppendEvent: &o} }

// unwrap returns the one op set in w.
func (w wireOp) unwrap() (Op, error) {
	var ops []Op
	if w.PutService != nil {
		ops = append(ops, *w.PutService)
	}
	if w.DeleteService != nil {
		ops = append(ops, *w.DeleteService)
	}
	if w.PutInstance != nil {
		ops = append(ops, *w.PutInstance)
	}
	if w.SetInstanceDesired != nil {
		ops = append(ops, *w.SetInstanceDesired)
	}
	if w.SetInstanceStatus != nil {
		ops = append(ops, *w.SetInstanceStatus)
	}
	if w.DeleteInstance != nil {
		ops = append(ops, *w.DeleteInstance)
	}
	if w.PutNode != nil {
		ops = append(ops, *w.PutNode)
	}
	if w.AppendEvent != nil {
		ops = append(ops, *w.AppendEvent)
	}
	if w.PutToken != nil {
		ops = append(ops, *w.PutToken)
	}
	if w.RevokeToken != nil {
		ops = append(ops, *w.RevokeToken)
	}
	if w.AppendAudit != nil {
		ops = append(ops, *w.AppendAudit)
	}
	if w.RestartService != nil {
		ops = append(ops, *w.RestartService)
	}
	if w.SetNodeScheduling != nil {
		ops = append(ops, *w.SetNodeScheduling)
	}
	if w.ServiceAbsent != nil {
		ops = append(ops, *w.ServiceAbsent)
	}
	if w.PutApproval != nil {
		ops = append(ops, *w.PutApproval)
	}
	if w.DecideApproval != nil {
		ops = append(ops, *w.DecideApproval)
	}
	if w.UseApproval != nil {
		ops = append(ops, *w.UseApproval)
	}
	if w.PutSecret != nil {
		ops = append(ops, *w.PutSecret)
	}
	if w.DeleteSecret != nil {
		ops = append(ops, *w.DeleteSecret)
	}
	if w.PutJoinToken != nil {
		ops = append(ops, *w.PutJoinToken)
	}
	if w.RevokeJoinToken != nil {
		ops = append(ops, *w.RevokeJoinToken)
	}
	if w.UseJoinToken != nil {
		ops = append(ops, *w.UseJoinToken)
	}
	if w.ScaleService != nil {
		ops = append(ops, *w.ScaleService)
	}
	if len(ops) != 1 {
		return nil, fmt.Errorf("op holds %d operations, want exactly 1 (written by a newer gantry?): %w", len(ops), errdefs.ErrInvalid)
	}
	return ops[0], nil
}

// Log entry format.
//
// An entry is a format byte followed by the command. Format 1 is JSON: the
// stored types already carry JSON tags and are what the API serves, so one
// encoding covers the log, snapshots and the wire, and an entry can be read
// with any JSON tool when debugging. Encoding a small command takes a few
// microseconds, far below the fsync every entry costs (see BenchmarkApply).
// A later format (say msgpack) gets a new byte; old entries stay readable.
const formatJSON byte = 1

// command is one log entry: the ops to apply atomically and the leader's
// clock when it was submitted. The FSM takes every timestamp from Time, never
// from its own clock, so replaying the log rebuilds exactly the same state.
type command struct {
	Time time.Time `json:"time"`
	Ops  []wireOp  `json:"ops"`
}

func encodeCommand(now time.Time, ops []Op) ([]byte, error) {
	cmd := command{Time: now.UTC().Round(0), Ops: make([]wireOp, len(ops))}
	for i, op := range ops {
		cmd.Ops[i] = op.wrap()
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command: %w", err)
	}
	data := make([]byte, 0, len(body)+1)
	data = append(data, formatJSON)
	return append(data, body...), nil
}

func decodeCommand(data []byte) (time.Time, []Op, error) {
	if len(data) == 0 {
		return time.Time{}, nil, fmt.Errorf("empty log entry: %w", errdefs.ErrInvalid)
	}
	if data[0] != formatJSON {
		return time.Time{}, nil, fmt.Errorf("log entry format %d is unknown (written by a newer gantry? upgrade this binary): %w", data[0], errdefs.ErrInvalid)
	}
	var cmd command
	if err := json.Unmarshal(data[1:], &cmd); err != nil {
		return time.Time{}, nil, fmt.Errorf("decode log entry: %v: %w", err, errdefs.ErrInvalid)
	}
	ops := make([]Op, len(cmd.Ops))
	for i, w := range cmd.Ops {
		op, err := w.unwrap()
		if err != nil {
			return time.Time{}, nil, fmt.Errorf("decode log entry: op %d: %w", i, err)
		}
		ops[i] = op
	}
	return cmd.Time, ops, nil
}

// Validation that needs no state.

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalid)...)
}

func (o PutService) validate() error {
	name, specName := o.Service.Name, o.Service.Spec.Name
	switch {
	case name == "" && specName == "":
		return invalid("put service: name is empty (set the spec's name)")
	case name != "" && specName != "" && name != specName:
		return invalid("put service %q: spec is named %q (the two names must match)", name, specName)
	}
	return nil
}

func (o DeleteService) validate() error {
	if o.Name == "" {
		return invalid("delete service: name is empty")
	}
	return nil
}

func validDesired(d string) bool { return d == DesiredRun || d == DesiredStop }

func (o PutInstance) validate() error {
	in := &o.Instance
	switch {
	case in.ID == "":
		return invalid("put instance: id is empty")
	case in.Service == "":
		return invalid("put instance %q: service is empty", in.ID)
	case in.Slot < 0:
		return invalid("put instance %q: slot %d is negative", in.ID, in.Slot)
	case in.Desired != "" && !validDesired(in.Desired):
		return invalid("put instance %q: desired state %q is unknown (use %q or %q)", in.ID, in.Desired, DesiredRun, DesiredStop)
	}
	return nil
}

func (o SetInstanceDesired) validate() error {
	switch {
	case o.ID == "":
		return invalid("set instance desired: id is empty")
	case !validDesired(o.Desired):
		return invalid("set instance %q desired: state %q is unknown (use %q or %q)", o.ID, o.Desired, DesiredRun, DesiredStop)
	}
	return nil
}

func (o SetInstanceStatus) validate() error {
	if o.ID == "" {
		return invalid("set instance status: id is empty")
	}
	return nil
}

func (o DeleteInstance) validate() error {
	if o.ID == "" {
		return invalid("delete instance: id is empty")
	}
	return nil
}

func (o PutNode) validate() error {
	if o.Node.ID == "" {
		return invalid("put node: id is empty")
	}
	return nil
}

func (o AppendEvent) validate() error {
	if o.Event.Type == "" {
		return invalid("append event: type is empty")
	}
	return nil
}
