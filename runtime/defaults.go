package runtime

import (
	"fmt"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/errdefs"
)

// Docker's default masked and read-only paths.
var (
	maskedPaths = []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
	readonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// defaultMounts returns the standard container filesystems, parents first.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", defaultShmSize}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
}

// mounts returns the default mounts (minus those an extra mount replaces),
// then the extra mounts sorted by destination (a parent sorts before its
// children), then the init binary.
func mounts(extra []specs.Mount, useInit bool, initPath string) []specs.Mount {
	replaced := map[string]bool{}
	for _, m := range extra {
		replaced[m.Destination] = true
	}
	var out []specs.Mount
	for _, m := range defaultMounts() {
		if !replaced[m.Destination] {
			out = append(out, m)
		}
	}
	sorted := append([]specs.Mount(nil), extra...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Destination < sorted[j].Destination })
	out = append(out, sorted...)
	if useInit {
		out = append(out, specs.Mount{
			Destination: InitMountPath,
			Type:        "bind",
			Source:      initPath,
			Options:     []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	return out
}

// defaultDeviceRules denies every device, then allows runc's defaults: mknod
// of any node, the standard character devices and ptys.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	i := func(n int64) *int64 { return &n }
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Access: "m"},                             // mknod any char device
		{Allow: true, Type: "b", Access: "m"},                             // mknod any block device
		{Allow: true, Type: "c", Major: i(1), Minor: i(3), Access: "rwm"}, // /dev/null
		{Allow: true, Type: "c", Major: i(1), Minor: i(5), Access: "rwm"}, // /dev/zero
		{Allow: true, Type: "c", Major: i(1), Minor: i(7), Access: "rwm"}, // /dev/full
		{Allow: true, Type: "c", Major: i(1), Minor: i(8), Access: "rwm"}, // /dev/random
		{Allow: true, Type: "c", Major: i(1), Minor: i(9), Access: "rwm"}, // /dev/urandom
		{Allow: true, Type: "c", Major: i(5), Minor: i(0), Access: "rwm"}, // /dev/tty
		{Allow: true, Type: "c", Major: i(5), Minor: i(1), Access: "rwm"}, // /dev/console
		{Allow: true, Type: "c", Major: i(5), Minor: i(2), Access: "rwm"}, // /dev/ptmx
		{Allow: true, Type: "c", Major: i(136), Access: "rwm"},            // /dev/pts/*
	}
}

// knownCaps are the Linux capabilities by number (0..40).
var knownCaps = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
	"SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// capabilities normalizes cap_add ("net_bind_service", "CAP_NET_ADMIN",
// "ALL") into sorted, de-duplicated "CAP_*" names. The default set is empty.
func capabilities(add []string) ([]string, error) {
	known := map[string]bool{}
	for _, c := range knownCaps {
		known[c] = true
	}
	set := map[string]bool{}
	for _, c := range add {
		name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
		switch {
		case name == "ALL":
			for _, k := range knownCaps {
				set[k] = true
			}
		case known[name]:
			set[name] = true
		default:
			return nil, fmt.Errorf("cap_add: unknown capability %q (want a Linux capability such as NET_BIND_SERVICE, see capabilities(7)): %w", c, errdefs.ErrInvalid)
		}
	}
	if len(set) == 0 {
		return []string{}, nil
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, "CAP_"+k)
	}
	sort.Strings(out)
	return out, nil
}
