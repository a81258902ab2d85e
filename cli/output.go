package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// newTable returns a tabwriter for aligned columns; call Flush when done.
func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw io.Writer, cols ...string) {
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// age renders a duration since t the way ps does: 45s, 12m, 3h, 5d.
func age(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ports renders a port map as "http:30001,metrics:30002".
func ports(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s:%d", n, m[n])
	}
	return strings.Join(parts, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortDigest shortens "sha256:<64 hex>" to 12 hex digits.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return orDash(d)
	}
	return algo + ":" + hex[:12]
}

// Version is stamped at build time (make build sets it from git describe).
var Version = ""

// buildVersion is the version this binary was built from.
func buildVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// progressPrinter shows pull progress: one updating line on a terminal,
// plain lines at every 10% otherwise.
// Notifications are handled on the MCP client's goroutine, so a late one
// may race with finish: mu orders them, and updates after finish are dropped.
type progressPrinter struct {
	mu      sync.Mutex
	done    bool
	w       io.Writer
	tty     bool
	label   string
	lastPct int
	lastAt  time.Time
	dirty   bool
}

func newProgressPrinter(w io.Writer, label string) *progressPrinter {
	return &progressPrinter{w: w, tty: isTerminal(w), label: label, lastPct: -1}
}

func (p *progressPrinter) update(done, total float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	var line string
	pct := -1
	if total > 0 {
		pct = min(100, int(done*100/total))
		line = fmt.Sprintf("%s: %s / %s (%d%%)", p.label, humanBytes(int64(done)), humanBytes(int64(total)), pct)
	} else {
		line = fmt.Sprintf("%s: %s", p.label, humanBytes(int64(done)))
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		p.dirty = true
		return
	}
	switch {
	case pct >= 0 && (pct/10 > p.lastPct/10 || p.lastPct < 0):
	case pct < 0 && time.Since(p.lastAt) >= time.Second:
	default:
		return
	}
	p.lastPct, p.lastAt = pct, time.Now()
	fmt.Fprintln(p.w, line)
}

// finish ends the updating line.
func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	if p.tty && p.dirty {
		fmt.Fprintln(p.w)
		p.dirty = false
	}
}
