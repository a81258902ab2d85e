package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

const (
	auditQueue    = 4096
	auditMaxBatch = 512
	// auditDrainTimeout bounds how long Run spends writing what is still
	// queued when it is stopped.
	auditDrainTimeout = 5 * time.Second
)

// AuditWriter appends tool calls to the audit log in the replicated state.
// Record only queues: Run writes what has queued since its last write as one
// Raft entry (an AppendAudit op), so a read tool does not wait for a Raft
// round trip and many concurrent calls share one. When the queue is full,
// Record waits: calls slow down rather than go unrecorded.
type AuditWriter struct {
	store *state.Store
	log   *slog.Logger
	keep  int

	ch      chan state.AuditEntry
	flushes chan chan error
	done    chan struct{} // closed when Run returns
}

var _ mcp.Auditor = (*AuditWriter)(nil)

// NewAuditWriter returns a writer that keeps the newest keep entries
// (state.DefaultMaxAudit when 0). Start Run before or soon after the first
// Record.
func NewAuditWriter(st *state.Store, log *slog.Logger, keep int) *AuditWriter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &AuditWriter{
		store:   st,
		log:     log.With("component", "audit"),
		keep:    keep,
		ch:      make(chan state.AuditEntry, auditQueue),
		flushes: make(chan chan error),
		done:    make(chan struct{}),
	}
}

// Record implements mcp.Auditor.
func (w *AuditWriter) Record(ctx context.Context, r mcp.AuditRecord) {
	e := state.AuditEntry{
		Time: r.Time, Principal: r.Principal, Tool: r.Tool, Arguments: r.Arguments,
		Decision: state.AuditAllowed, Reason: r.Reason, Result: r.Result, LatencyUS: r.Latency.Microseconds(),
	}
	if !r.Allowed {
		e.Decision = state.AuditDenied
	}
	if r.Decision != "" {
		e.Decision = r.Decision // pending-approval
	}
	e.Rule = r.Rule
	select {
	case w.ch <- e:
	case <-w.done:
		w.log.Error("audit entry lost: the audit writer has stopped", "tool", r.Tool, "principal", r.Principal)
	case <-ctx.Done():
		w.log.Error("audit entry lost: the call ended while the audit queue was full", "tool", r.Tool, "principal", r.Principal)
	}
}

// Flush waits until every entry recorded before it is in the state.
func (w *AuditWriter) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case w.flushes <- reply:
	case <-w.done:
		return errors.New("the audit writer has stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run writes queued entries until ctx ends, then writes what is left.
func (w *AuditWriter) Run(ctx context.Context) error {
	defer close(w.done)
	for {
		select {
		case e := <-w.ch:
			_ = w.write(ctx, w.batch(e))
		case reply := <-w.flushes:
			reply <- w.drain(ctx)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditDrainTimeout)
			err := w.drain(dctx)
			cancel()
			if err != nil {
				return fmt.Errorf("audit log: %w", err)
			}
			return nil
		}
	}
}

// batch returns first and whatever else is queued, up to auditMaxBatch.
func (w *AuditWriter) batch(first state.AuditEntry) []state.AuditEntry {
	b := []state.AuditEntry{first}
	for len(b) < auditMaxBatch {
		select {
		case e := <-w.ch:
			b = append(b, e)
		default:
			return b
		}
	}
	return b
}

// drain writes everything queued.
func (w *AuditWriter) drain(ctx context.Context) error {
	var errs []error
	for {
		select {
		case e := <-w.ch:
			if err := w.write(ctx, w.batch(e)); err != nil {
				errs = append(errs, err)
			}
		default:
			return errors.Join(errs...)
		}
	}
}

func (w *AuditWriter) write(ctx context.Context, b []state.AuditEntry) error {
	if _, err := w.store.Apply(ctx, state.AppendAudit{Entries: b, Keep: w.keep}); err != nil {
		w.log.Error("audit entries lost: cannot write them to the state", "entries", len(b), "err", err)
		return fmt.Errorf("write %d audit entries: %w", len(b), err)
	}
	return nil
}

// startAuditWriter runs w until the returned stop is called; stop then
// waits for it to write what is queued. It is not tied to ctx's
// cancellation, so that calls finishing while the MCP server shuts down are
// still recorded: call stop after the server has stopped.
func startAuditWriter(ctx context.Context, w *AuditWriter) (stop func()) {
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(actx); err != nil {
			w.log.Error("audit writer stopped with entries unwritten", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}
