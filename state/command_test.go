package state

import (
	"errors"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

func TestEncodeDecodeCommandOps(t *testing.T) {
	st := SetInstanceStatus{ID: "web-0-abc", Status: InstanceStatus{State: StateRunning, PID: 42}}
	ev := AppendEvent{Event: Event{Type: "Started", Node: "n1", Instance: "web-0-abc"}}
	cmd, err := EncodeCommand(st, ev)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := DecodeCommandOps(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 2 {
		t.Fatalf("decoded %d ops, want 2", len(ops))
	}
	if got, ok := ops[0].(SetInstanceStatus); !ok || got.ID != st.ID || got.Status.PID != 42 {
		t.Errorf("op 0 = %#v, want %#v", ops[0], st)
	}
	if got, ok := ops[1].(AppendEvent); !ok || got.Event.Node != "n1" {
		t.Errorf("op 1 = %#v, want %#v", ops[1], ev)
	}

	for name, bad := range map[string][]byte{
		"empty":   nil,
		"format":  {9, '{', '}'},
		"json":    append([]byte{formatJSON}, "{not json"...),
		"no ops":  append([]byte{formatJSON}, `{"ops":[]}`...),
		"invalid": append([]byte{formatJSON}, `{"ops":[{"set_instance_status":{"id":""}}]}`...),
	} {
		if _, err := DecodeCommandOps(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: DecodeCommandOps err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := EncodeCommand(); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("EncodeCommand() err = %v, want ErrInvalid", err)
	}
	if _, err := EncodeCommand(SetInstanceStatus{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("EncodeCommand(empty id) err = %v, want ErrInvalid", err)
	}
}
