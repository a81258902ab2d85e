package spec

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxSignal is SIGRTMAX on Linux.
const maxSignal = 64

// ParseSignal parses a signal name ("SIGTERM", "TERM", "sigterm") or number
// ("15", 1–64). Errors are in the errdefs.ErrInvalid category.
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, &valueError{Value: s, Msg: "empty signal", Hint: "use a name like SIGTERM or a number like 15"}
	}
	if t[0] >= '0' && t[0] <= '9' {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > maxSignal {
			return 0, &valueError{Value: s, Msg: fmt.Sprintf("signal number must be between 1 and %d", maxSignal), Hint: "or use a name like SIGTERM"}
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(t)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	hint := "use a name like SIGTERM, SIGINT, SIGQUIT or SIGHUP, or a number"
	if m := suggest(name, signalNames()); m != "" {
		hint = "did you mean " + m + "?"
	}
	return 0, &valueError{Value: s, Msg: "unknown signal", Hint: hint}
}

// signalNames lists the names unix.SignalNum knows.
func signalNames() []string {
	var names []string
	for i := 1; i <= maxSignal; i++ {
		if n := unix.SignalName(syscall.Signal(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// capabilities are the Linux capability names (without CAP_) as of Linux 5.9.
var capabilities = map[string]bool{
	"CHOWN": true, "DAC_OVERRIDE": true, "DAC_READ_SEARCH": true, "FOWNER": true,
	"FSETID": true, "KILL": true, "SETGID": true, "SETUID": true, "SETPCAP": true,
	"LINUX_IMMUTABLE": true, "NET_BIND_SERVICE": true, "NET_BROADCAST": true,
	"NET_ADMIN": true, "NET_RAW": true, "IPC_LOCK": true, "IPC_OWNER": true,
	"SYS_MODULE": true, "SYS_RAWIO": true, "SYS_CHROOT": true, "SYS_PTRACE": true,
	"SYS_PACCT": true, "SYS_ADMIN": true, "SYS_BOOT": true, "SYS_NICE": true,
	"SYS_RESOURCE": true, "SYS_TIME": true, "SYS_TTY_CONFIG": true, "MKNOD": true,
	"LEASE": true, "AUDIT_WRITE": true, "AUDIT_CONTROL": true, "SETFCAP": true,
	"MAC_OVERRIDE": true, "MAC_ADMIN": true, "SYSLOG": true, "WAKE_ALARM": true,
	"BLOCK_SUSPEND": true, "AUDIT_READ": true, "PERFMON": true, "BPF": true,
	"CHECKPOINT_RESTORE": true,
}

// NormalizeCapability returns the canonical "CAP_X" form of a Linux
// capability name given with or without the CAP_ prefix, in any case.
func NormalizeCapability(s string) (string, bool) {
	c := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_")
	if !capabilities[c] {
		return "", false
	}
	return "CAP_" + c, true
}

func capabilityNames() []string {
	names := make([]string, 0, len(capabilities))
	for c := range capabilities {
		names = append(names, "CAP_"+c)
	}
	sort.Strings(names)
	return names
}

// suggest returns the candidate closest to s, if it is close enough to be a
// likely typo: equal ignoring case and '_'/'-', or within an edit distance of
// about a third of its length.
func suggest(s string, candidates []string) string {
	fold := func(x string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(x))
	}
	if len(s) > 64 {
		return ""
	}
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if fold(c) == fold(s) {
			return c
		}
		if d := EditDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, min(3, len(s)/3))
	if bestD <= limit {
		return best
	}
	return ""
}

// EditDistance is the Levenshtein distance between a and b (bytes), for
// "did you mean" hints.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
