package state

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	hclog "github.com/hashicorp/go-hclog"
)

// hclogAdapter sends raft's hclog output to an slog.Logger. Raft is chatty at
// info level (every election, every snapshot), so only warnings and errors
// pass by default.
type hclogAdapter struct {
	log   *slog.Logger
	name  string
	args  []any
	level *atomic.Int32 // shared by loggers derived with With and Named
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHCLogAdapter(log *slog.Logger, level hclog.Level) *hclogAdapter {
	a := &hclogAdapter{log: log, level: new(atomic.Int32)}
	a.level.Store(int32(level))
	return a
}

func slogLevel(l hclog.Level) slog.Level {
	switch {
	case l <= hclog.Debug:
		return slog.LevelDebug
	case l == hclog.Info:
		return slog.LevelInfo
	case l == hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return l != hclog.Off && l >= hclog.Level(a.level.Load()) &&
		a.log.Enabled(context.Background(), slogLevel(l))
}

// routine are messages raft logs as warnings that are the normal course of
// events for Gantry: a lone voter always starts by timing out waiting for a
// leader.
var routine = map[string]bool{
	"heartbeat timeout reached, starting election": true,
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.NoLevel || (level == hclog.Warn && routine[msg]) {
		level = hclog.Info
	}
	if !a.enabled(level) {
		return
	}
	attrs := slices.Concat([]any{"component", a.component()}, a.args, args)
	a.log.Log(context.Background(), slogLevel(level), msg, attrs...)
}

func (a *hclogAdapter) component() string {
	if a.name == "" {
		return "raft"
	}
	return "raft." + a.name
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return slices.Clone(a.args) }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = slices.Concat(a.args, args)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level.Store(int32(level)) }
func (a *hclogAdapter) GetLevel() hclog.Level      { return hclog.Level(a.level.Load()) }

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{a: a, opts: *opts}
}

// stdWriter turns lines written through a standard *log.Logger into
// records, reading the level from a "[WARN]"-style prefix when asked to.
type stdWriter struct {
	a    *hclogAdapter
	opts hclog.StandardLoggerOptions
}

func (w *stdWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, " \t\r\n"))
	level := hclog.Info
	if w.opts.ForceLevel != hclog.NoLevel {
		level = w.opts.ForceLevel
	} else if w.opts.InferLevels {
		for prefix, l := range map[string]hclog.Level{
			"[TRACE]": hclog.Trace, "[DEBUG]": hclog.Debug, "[INFO]": hclog.Info,
			"[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error,
		} {
			if rest, ok := strings.CutPrefix(msg, prefix); ok {
				level, msg = l, strings.TrimSpace(rest)
				break
			}
		}
	}
	w.a.Log(level, msg)
	return len(p), nil
}
