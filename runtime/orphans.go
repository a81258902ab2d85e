package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Being a child subreaper has a cost: a process inside a container whose
// parent outside it dies (a `runc exec` killed before its command) is
// re-parented to us, not to the container's init. When it exits nobody
// reaps it, and the container's init cannot finish exiting while a process
// of its PID namespace is left unreaped, so the container would hang in
// "stopping" and `delete` would fail. Wait therefore checks, while it
// waits, whether the init is stuck exiting, and then reaps such orphans.
// It never reaps a process of our own PID namespace (os/exec children) nor
// a namespace's init (a container, whose status Wait collects).

// pfExiting is the kernel's PF_EXITING task flag.
const pfExiting = 0x4

// procStat returns the state letter, parent PID and flags of pid from
// /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, flags uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 7 {
		return 0, 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, 0, err
	}
	flags, err = strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return 0, 0, 0, err
	}
	return f[0][0], ppid, flags, nil
}

// processExiting reports whether pid is exiting. A namespace's init stays
// so (its leader thread may already show as a zombie while another thread
// waits for the rest of the namespace to be reaped) until its namespace is
// empty; only then does its pidfd become readable.
func processExiting(pid int) bool {
	_, _, flags, err := procStat(pid)
	return err == nil && flags&pfExiting != 0
}

// nsPIDs returns the NSpid line of /proc/PID/status: the process's PID in
// our namespace and in each nested one.
func nsPIDs(pid string) []string {
	data, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// reapOrphans reaps our zombie children that live in a nested PID namespace
// and are not its init, and returns how many it reaped.
func reapOrphans() (int, error) {
	self := os.Getpid()
	depth := len(nsPIDs("self"))
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	reaped := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, _, err := procStat(pid)
		if err != nil || ppid != self || state != 'Z' {
			continue
		}
		ns := nsPIDs(e.Name())
		if depth == 0 || len(ns) <= depth || ns[len(ns)-1] == "1" {
			continue
		}
		var info unix.Siginfo
		err = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG, nil)
		if err == nil {
			reaped++
		} else if !errors.Is(err, unix.ECHILD) {
			return reaped, err
		}
	}
	return reaped, nil
}
