// Package runtime turns a service spec and an image config into an OCI
// runtime bundle (BuildSpec, pure) and drives a runc-compatible CLI (runc,
// crun, youki) to run it: create/start with the container's stdout and stderr
// going straight into a log file, exit-status and OOM detection through a
// pidfd and the container's cgroup, kill, delete, state, list and exec.
//
// There is no per-container shim: Gantry makes itself a child subreaper so a
// container's init (orphaned when `runc create` exits) becomes its child.
// The package also embeds gantry-init, the tiny init that runs as PID 1 in
// containers whose spec enables it (see InstallInit).
package runtime

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

// InitMountPath is where the init binary is bind-mounted in the container.
const InitMountPath = "/.gantry/init"

// DefaultPath is the PATH a container gets when neither the image nor the
// spec sets one (Docker's default).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Defaults applied by BuildSpec.
const (
	defaultNoFile    = 1048576
	cfsPeriod        = 100000 // microseconds
	defaultShmSize   = "size=65536k"
	maxHostnameBytes = 63
)

// ImageConfig is the part of an OCI image config that shapes the process.
type ImageConfig struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
}

// UserLookup resolves user and group names, normally from the image's
// /etc/passwd and /etc/group (see UsersFromRootfs). LookupUser also accepts
// a numeric uid, which it matches against the passwd uid field so that a
// numeric user gets its primary group.
type UserLookup interface {
	LookupUser(name string) (uid, gid uint32, err error)
	LookupGroup(name string) (gid uint32, err error)
}

// BundleInput is everything BuildSpec needs to write a container's config.
type BundleInput struct {
	ID, Hostname string
	Service      spec.Service
	Image        ImageConfig
	// Rootfs is the absolute path of the mounted root filesystem.
	Rootfs string
	// NetNS is the path of an existing network namespace; "" makes a new one.
	NetNS string
	// CgroupsPath defaults to "/gantry/<ID>".
	CgroupsPath string
	// InitPath is the host path of the gantry-init binary, used when the
	// service enables the init (the default).
	InitPath string
	// Mounts are extra mounts (e.g. /etc/hosts, /etc/resolv.conf). A mount
	// whose destination equals a default mount's replaces it.
	Mounts []specs.Mount
	// Users resolves user and group names; nil allows numeric users only.
	Users UserLookup
}

// DefaultCgroupsPath is the cgroup a container gets when BundleInput does not
// name one.
func DefaultCgroupsPath(id string) string { return "/gantry/" + id }

// BuildSpec returns the OCI runtime config for in. It does no I/O (Users may).
// Its output is deterministic (env, capabilities and mounts are sorted) so it
// can be compared with golden files.
func BuildSpec(in BundleInput) (*specs.Spec, error) {
	if in.ID == "" {
		return nil, fmt.Errorf("bundle: container id is empty: %w", errdefs.ErrInvalid)
	}
	if !path.IsAbs(in.Rootfs) {
		return nil, fmt.Errorf("bundle %s: rootfs %q must be an absolute path: %w", in.ID, in.Rootfs, errdefs.ErrInvalid)
	}
	argv, err := processArgs(in.Service, in.Image)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", in.ID, err)
	}
	useInit := in.Service.InitEnabled()
	if useInit {
		if in.InitPath == "" {
			return nil, fmt.Errorf("bundle %s: the init is enabled but no init binary was given (BundleInput.InitPath; see InstallInit): %w", in.ID, errdefs.ErrInvalid)
		}
		argv = append([]string{InitMountPath, "--"}, argv...)
	}
	user, err := resolveUser(in.Service.User, in.Image.User, in.Users)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", in.ID, err)
	}
	hostname := in.Hostname
	if hostname == "" {
		hostname = in.ID
	}
	if len(hostname) > maxHostnameBytes {
		hostname = hostname[:maxHostnameBytes]
	}
	caps, err := capabilities(in.Service.CapAdd)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", in.ID, err)
	}
	capSet := &specs.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps, Inheritable: caps,
	}
	// A non-root process loses its capabilities at execve unless they are
	// ambient; root keeps them through the permitted set.
	if user.UID != 0 && len(caps) > 0 {
		capSet.Ambient = caps
	}
	cwd := "/"
	switch {
	case in.Service.Workdir != "":
		cwd = in.Service.Workdir
	case in.Image.WorkingDir != "":
		cwd = in.Image.WorkingDir
	}
	cgroupsPath := in.CgroupsPath
	if cgroupsPath == "" {
		cgroupsPath = DefaultCgroupsPath(in.ID)
	}

	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User:            user,
			Args:            argv,
			Env:             mergeEnv(in.Image.Env, hostname, in.Service.Env),
			Cwd:             cwd,
			Capabilities:    capSet,
			NoNewPrivileges: true,
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: defaultNoFile, Soft: defaultNoFile},
			},
		},
		Root:     &specs.Root{Path: in.Rootfs},
		Hostname: hostname,
		Mounts:   mounts(in.Mounts, useInit, in.InitPath),
		Linux: &specs.Linux{
			CgroupsPath: cgroupsPath,
			Resources:   resources(in.Service.Resources),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: in.NetNS},
			},
			MaskedPaths:   append([]string(nil), maskedPaths...),
			ReadonlyPaths: append([]string(nil), readonlyPaths...),
			// Seccomp is deliberately left out for now: containers run with
			// no capabilities and no_new_privs, but without a syscall filter.
			// A default profile (Docker's allow-list) is future work.
		},
	}
	return s, nil
}

// processArgs applies Docker's rules: command replaces the image
// ENTRYPOINT and drops the image CMD; args replaces CMD.
func processArgs(svc spec.Service, img ImageConfig) ([]string, error) {
	entrypoint, cmd := img.Entrypoint, img.Cmd
	if len(svc.Command) > 0 {
		entrypoint, cmd = svc.Command, nil
	}
	if len(svc.Args) > 0 {
		cmd = svc.Args
	}
	argv := append(append([]string(nil), entrypoint...), cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command to run: set command (or args) in the service spec, or use an image with an entrypoint or cmd: %w", errdefs.ErrInvalid)
	}
	return argv, nil
}

// mergeEnv layers image env, HOSTNAME and spec env (last wins) and returns
// KEY=VALUE entries sorted by key, with a default PATH.
func mergeEnv(image []string, hostname string, svc map[string]string) []string {
	env := map[string]string{}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		if k != "" {
			env[k] = v
		}
	}
	env["HOSTNAME"] = hostname
	for k, v := range svc {
		env[k] = v
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = DefaultPath
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// resolveUser turns "", "uid", "uid:gid", "name" or "name:group" (spec
// first, then image) into ids.
func resolveUser(specUser, imageUser string, users UserLookup) (specs.User, error) {
	u := specUser
	if u == "" {
		u = imageUser
	}
	if u == "" {
		return specs.User{}, nil
	}
	name, group, hasGroup := strings.Cut(u, ":")
	if name == "" || (hasGroup && group == "") {
		return specs.User{}, fmt.Errorf("user %q: want uid, uid:gid, name or name:group: %w", u, errdefs.ErrInvalid)
	}
	var uid, gid uint32
	if n, ok := parseID(name); ok {
		uid = n
		// A numeric uid gets its passwd primary group when it has an entry,
		// else gid 0 (Docker's behaviour).
		if users != nil {
			if _, g, err := users.LookupUser(name); err == nil {
				gid = g
			}
		}
	} else {
		if users == nil {
			return specs.User{}, fmt.Errorf("user %q: names need the image's /etc/passwd, which is not available; use a numeric uid: %w", name, errdefs.ErrInvalid)
		}
		var err error
		uid, gid, err = users.LookupUser(name)
		if err != nil {
			return specs.User{}, fmt.Errorf("user %q is not in the image's /etc/passwd (%v); use a numeric uid or a user the image defines: %w", name, err, errdefs.ErrInvalid)
		}
	}
	if hasGroup {
		if n, ok := parseID(group); ok {
			gid = n
		} else {
			if users == nil {
				return specs.User{}, fmt.Errorf("group %q: names need the image's /etc/group, which is not available; use a numeric gid: %w", group, errdefs.ErrInvalid)
			}
			g, err := users.LookupGroup(group)
			if err != nil {
				return specs.User{}, fmt.Errorf("group %q is not in the image's /etc/group (%v); use a numeric gid or a group the image defines: %w", group, err, errdefs.ErrInvalid)
			}
			gid = g
		}
	}
	return specs.User{UID: uid, GID: gid}, nil
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// resources maps spec limits to cgroup settings. Zero means no limit.
func resources(r spec.Resources) *specs.LinuxResources {
	res := &specs.LinuxResources{Devices: defaultDeviceRules()}
	if r.CPU > 0 {
		quota := int64(r.CPU) * cfsPeriod / 1000
		period := uint64(cfsPeriod)
		// Kubernetes' conversion: 1024 shares per core, at least 2.
		shares := uint64(r.CPU) * 1024 / 1000
		if shares < 2 {
			shares = 2
		}
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period, Shares: &shares}
	}
	if r.Memory > 0 {
		limit := int64(r.Memory)
		swap := limit // memory+swap == memory: no swap
		res.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if r.Pids > 0 {
		pids := r.Pids
		res.Pids = &specs.LinuxPids{Limit: &pids}
	}
	return res
}
