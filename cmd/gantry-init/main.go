// Command gantry-init is the minimal init Gantry runs as PID 1 in a
// container (like tini or docker run --init):
//
//	gantry-init -- command [args...]
//
// It runs the command as its child with the same stdio and environment,
// forwards every catchable signal it receives to the child, reaps every
// zombie (orphans are re-parented to PID 1), and when the child exits it
// exits with the child's code, or 128+N when the child was killed by signal
// N. If the command cannot be started it exits 127 (not found) or 126 (not
// executable). It uses the standard library only and keeps its memory small
// (one P, an aggressive GC).
package main

import (
	"errors"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"unsafe"
)

// Exit codes, as in POSIX shells.
const (
	exitUsage      = 2
	exitCannotExec = 126
	exitNotFound   = 127
	exitSignalBase = 128
)

// prctl options from <linux/prctl.h>.
const (
	prSetName           = 15
	prSetChildSubreaper = 36
)

// readyName is the process name (/proc/PID/comm) gantry-init takes once it
// forwards signals. Until then a signal sent to it is lost: the kernel
// discards signals to a PID namespace's init that it does not handle, and
// the Go runtime would treat an early SIGTERM as fatal. Gantry's runtime
// waits for this name before Start returns.
const readyName = "gantry-init"

func init() {
	// Keep main on the main thread, whose name is the process's comm.
	runtime.LockOSThread()
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(10)

	argv := commandArgs(args)
	if len(argv) == 0 {
		warn("usage: gantry-init -- command [args...]")
		return exitUsage
	}
	if os.Getpid() != 1 {
		// Outside a PID namespace we are not the orphans' reaper by
		// default; become one for our subtree.
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	}

	// Subscribe before starting the child so no signal is lost; signals
	// that arrive early are forwarded once the child exists.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, forwardedSignals()...)
	setName(readyName)
	runtime.UnlockOSThread()

	path, err := lookPath(argv[0])
	if err != nil {
		return execFailed(argv[0], err)
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		return execFailed(argv[0], err)
	}

	exited := make(chan int, 1)
	go reap(pid, exited)
	for {
		select {
		case code := <-exited:
			return code
		case s := <-sigs:
			// ESRCH: the child is gone and its exit is about to be reaped.
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}
}

// commandArgs returns the arguments after "--" (or all of them when the
// first is not an option).
func commandArgs(args []string) []string {
	for i, a := range args {
		if a == "--" {
			return args[i+1:]
		}
		if !strings.HasPrefix(a, "-") {
			return args[i:]
		}
	}
	return nil
}

// reap collects every child that exits, and sends the main child's exit
// code when it goes. A blocking wait4(-1) is fine here: this process starts
// no other children whose status someone else wants.
func reap(child int, exited chan<- int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			// ECHILD: nothing left to wait for, so the child is gone.
			warn("gantry-init: wait: " + err.Error())
			exited <- exitNotFound
			return
		}
		if pid != child {
			continue
		}
		switch {
		case ws.Exited():
			exited <- ws.ExitStatus()
			return
		case ws.Signaled():
			exited <- exitSignalBase + int(ws.Signal())
			return
		}
	}
}

// forwardedSignals are all catchable signals except SIGCHLD (our own
// business), SIGURG (the Go runtime's preemption signal), the synchronous
// fault signals, and the terminal-background signals.
func forwardedSignals() []os.Signal {
	skip := map[syscall.Signal]bool{
		syscall.SIGKILL: true, syscall.SIGSTOP: true, syscall.SIGCHLD: true,
		syscall.SIGURG: true, syscall.SIGSEGV: true, syscall.SIGBUS: true,
		syscall.SIGFPE: true, syscall.SIGILL: true, syscall.SIGTRAP: true,
		syscall.SIGSYS: true, syscall.SIGTTIN: true, syscall.SIGTTOU: true,
	}
	var out []os.Signal
	// 1..64 covers the standard and the real-time signals; the Go runtime
	// refuses the two glibc reserves for itself silently.
	for s := syscall.Signal(1); s <= 64; s++ {
		if !skip[s] {
			out = append(out, s)
		}
	}
	return out
}

// lookPath finds name in PATH the way execvp does.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, checkExec(name)
	}
	pathEnv, ok := os.LookupEnv("PATH")
	if !ok {
		pathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	var firstErr error = syscall.ENOENT
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		err := checkExec(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, syscall.EACCES) && errors.Is(firstErr, syscall.ENOENT) {
			firstErr = err
		}
	}
	return "", firstErr
}

func checkExec(p string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return err
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EACCES
	}
	return syscall.Access(p, 1 /* X_OK */)
}

func execFailed(name string, err error) int {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOTDIR) {
		warn("gantry-init: " + name + ": command not found (check the command and PATH in the service spec and the image)")
		return exitNotFound
	}
	warn("gantry-init: " + name + ": cannot execute: " + err.Error())
	return exitCannotExec
}

// setName sets the calling thread's name (prctl PR_SET_NAME).
func setName(name string) {
	b := append([]byte(name), 0)
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetName, uintptr(unsafe.Pointer(&b[0])), 0)
	runtime.KeepAlive(b)
}

func warn(msg string) { _, _ = os.Stderr.WriteString(msg + "\n") }
