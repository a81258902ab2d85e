package runtime

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/errdefs"
)

// CgroupMode is how the host mounts cgroups.
type CgroupMode int

// Cgroup modes.
const (
	CgroupUnknown CgroupMode = iota
	CgroupLegacy             // v1 only
	CgroupHybrid             // v1 controllers, v2 mounted at /sys/fs/cgroup/unified
	CgroupUnified            // v2 only
)

func (m CgroupMode) String() string {
	switch m {
	case CgroupLegacy:
		return "v1"
	case CgroupHybrid:
		return "hybrid"
	case CgroupUnified:
		return "unified"
	}
	return "unknown"
}

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// DetectCgroupMode reports how cgroups are mounted on this host.
func DetectCgroupMode() (CgroupMode, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return CgroupUnknown, fmt.Errorf("statfs %s: %w: %w", cgroupRoot, err, errdefs.ErrUnavailable)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return CgroupUnified, nil
	}
	if err := unix.Statfs(filepath.Join(cgroupRoot, "unified"), &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return CgroupHybrid, nil
	}
	return CgroupLegacy, nil
}

// runtimeInfo is what `<runtime> --version` tells.
type runtimeInfo struct {
	kind    string // first word: runc, crun, youki, ...
	version string // without build metadata
}

func (i runtimeInfo) String() string {
	if i.version == "" {
		return i.kind
	}
	return i.kind + " " + i.version
}

// parseVersion reads the first line of `--version` output, e.g.
// "runc version 1.1.5+ds1" or "crun version 1.8.1".
func parseVersion(out string) runtimeInfo {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	f := strings.Fields(line)
	var info runtimeInfo
	if len(f) > 0 {
		info.kind = strings.ToLower(f[0])
	}
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "version" {
			info.version, _, _ = strings.Cut(f[i+1], "+")
			break
		}
	}
	return info
}

// checkCompat refuses combinations known not to work.
func checkCompat(info runtimeInfo, mode CgroupMode) error {
	if info.kind == "crun" && mode == CgroupHybrid {
		return errdefs.WithHint(
			fmt.Errorf("crun refuses cgroup v1 hybrid mode (cgroup v2 mounted at /sys/fs/cgroup/unified), which this host uses: %w", errdefs.ErrUnavailable),
			"use runc (install the runc package and set the runtime binary to runc), or boot the host with the unified cgroup v2 hierarchy")
	}
	return nil
}

// oomKillCount reads the number of OOM kills in a container's memory
// cgroup: memory.oom_control (v1, hybrid) or memory.events (v2).
func oomKillCount(mode CgroupMode, cgroupsPath string) (int64, error) {
	if cgroupsPath == "" || strings.Contains(cgroupsPath, ":") {
		// "slice:prefix:name" is the systemd driver's syntax, not a path.
		return 0, fmt.Errorf("cgroups path %q is not a cgroupfs path: %w", cgroupsPath, errdefs.ErrInvalid)
	}
	rel := filepath.Join("/", cgroupsPath)
	var file string
	if mode == CgroupUnified {
		file = filepath.Join(cgroupRoot, rel, "memory.events")
	} else {
		file = filepath.Join(cgroupRoot, "memory", rel, "memory.oom_control")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return parseOOMKill(data)
}

// parseOOMKill finds the "oom_kill N" line of memory.oom_control or
// memory.events.
func parseOOMKill(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if ok && k == "oom_kill" {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no oom_kill counter (kernel older than 4.13?): %w", errdefs.ErrNotFound)
}
