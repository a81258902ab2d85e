package state

import (
	"fmt"
	"time"
)

// Raft commands as bytes, for the node RPC (rpc package): a worker encodes
// its ops here and sends the bytes to a server, which decodes them to check
// what the worker may change before it applies them.

// EncodeCommand validates ops and encodes them as one log entry, stamped
// with this machine's clock, in the format Store.Apply writes.
func EncodeCommand(ops ...Op) ([]byte, error) {
	if len(ops) == 0 {
		return nil, invalid("encode command: no ops")
	}
	for i, op := range ops {
		if op == nil {
			return nil, invalid("encode command: op %d is nil", i)
		}
		if err := op.validate(); err != nil {
			return nil, err
		}
	}
	return encodeCommand(time.Now(), ops)
}

// DecodeCommandOps decodes a command written by EncodeCommand (or
// Store.Apply) and returns its ops: PutService, SetInstanceStatus, ... values,
// to be inspected with a type switch. A malformed command fails with
// errdefs.ErrInvalid.
func DecodeCommandOps(cmd []byte) ([]Op, error) {
	_, ops, err := decodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, invalid("decode command: no ops")
	}
	for i, op := range ops {
		if err := op.validate(); err != nil {
			return nil, fmt.Errorf("decode command: op %d: %w", i, err)
		}
	}
	return ops, nil
}
