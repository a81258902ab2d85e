package cluster

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/logs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/state"
)

// maxGrepScan bounds how much of each instance's log a grep reads: the
// newest 4 MiB.
const maxGrepScan = 4 << 20

// filteredLogs is Logs with since and grep. Log lines carry no timestamps,
// so since works per log: an instance whose log was last written before it
// contributes nothing, and one started after it contributes everything.
func (b *Backend) filteredLogs(ctx context.Context, in api.LogsInput) (*api.LogsResult, error) {
	if _, err := b.Store.Service(in.Name); err != nil {
		return nil, err
	}
	var since time.Time
	if in.Since != "" {
		t, err := time.Parse(time.RFC3339Nano, in.Since)
		if err != nil {
			return nil, errdefs.WithHint(fmt.Errorf("since %q: %w", in.Since, errdefs.ErrInvalid), "pass an RFC 3339 time or a duration such as 10m")
		}
		since = t
	}
	match := func(string) bool { return true }
	if in.Grep != "" {
		m, err := mcp.GrepMatcher(in.Grep)
		if err != nil {
			return nil, errdefs.WithHint(fmt.Errorf("grep %q: %v: %w", in.Grep, err, errdefs.ErrInvalid), "fix the regular expression")
		}
		match = m
	}
	tail := in.Tail
	if tail <= 0 {
		tail = 100
	}
	insts, _ := b.Store.Instances(state.InstanceFilter{Service: in.Name})
	res := &api.LogsResult{Service: in.Name, Instances: []api.LogBlock{}}
	var notes []string
	scrub := b.SecretScrubber(in.Name)
	if !since.IsZero() {
		notes = append(notes, "log lines carry no timestamps: since leaves out logs last written before it, and an instance running from before it may show older lines")
	}
	if in.Grep != "" {
		notes = append(notes, fmt.Sprintf("grep searched the newest %d MiB of each log", maxGrepScan>>20))
	}
	budget := maxLogBytes
	found := false
	for _, inst := range insts {
		if in.Instance != "" && inst.ID != in.Instance {
			continue
		}
		found = true
		path := b.LogPath(inst.ID)
		if !since.IsZero() && lastWrite(path).Before(since) {
			continue
		}
		n, scan := tail, budget
		if in.Grep != "" {
			n, scan = 0, maxGrepScan
		}
		lines, trunc, err := logs.Tail(path, n, scan)
		if err != nil && !errdefs.IsNotFound(err) {
			lines = []string{fmt.Sprintf("(log unavailable: %v)", err)}
		}
		// Before grep, so that grep cannot probe for a secret's value.
		lines = scrubTail(scrub, lines, trunc, scan)
		var kept []string
		for _, l := range lines {
			if match(l) {
				kept = append(kept, l)
			}
		}
		if len(kept) > tail {
			kept, trunc = kept[len(kept)-tail:], true
		}
		for _, l := range kept {
			budget -= len(l) + 1
		}
		res.Truncated = res.Truncated || trunc
		res.Instances = append(res.Instances, api.LogBlock{Instance: inst.ID, Lines: orEmpty(kept)})
		if budget <= 0 {
			res.Truncated = true
			break
		}
	}
	if in.Instance != "" && !found {
		return nil, errdefs.WithHint(fmt.Errorf("instance %q of service %q: %w", in.Instance, in.Name, errdefs.ErrNotFound),
			"list instances with get_service")
	}
	sort.Slice(res.Instances, func(i, j int) bool { return res.Instances[i].Instance < res.Instances[j].Instance })
	res.Note = strings.Join(notes, "; ")
	return res, nil
}

// lastWrite is the newest modification time of a log and its first rotated
// copy; the zero time when neither exists.
func lastWrite(path string) time.Time {
	var t time.Time
	for _, p := range []string{path, path + ".1"} {
		if st, err := os.Stat(p); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// scrubTail scrubs the lines logs.Tail read with bound maxBytes. When the
// newest line alone was longer than the bound, Tail kept its end, so the
// line may begin inside a secret's value: that piece goes too.
func scrubTail(sc *Scrubber, lines []string, truncated bool, maxBytes int) []string {
	if truncated && len(lines) == 1 && len(lines[0]) >= maxBytes-1 {
		lines[0] = sc.Cut(lines[0], true, false)
		return lines
	}
	return sc.Lines(lines)
}
