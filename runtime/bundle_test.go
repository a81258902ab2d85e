package runtime

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fakeUsers is a UserLookup over fixed tables (BuildSpec is pure; the real
// UsersFromRootfs is tested below on a real directory).
type fakeUsers struct {
	users  map[string][2]uint32
	groups map[string]uint32
}

func (f fakeUsers) LookupUser(name string) (uint32, uint32, error) {
	if u, ok := f.users[name]; ok {
		return u[0], u[1], nil
	}
	return 0, 0, fmt.Errorf("user %q: %w", name, errdefs.ErrNotFound)
}

func (f fakeUsers) LookupGroup(name string) (uint32, error) {
	if g, ok := f.groups[name]; ok {
		return g, nil
	}
	return 0, fmt.Errorf("group %q: %w", name, errdefs.ErrNotFound)
}

var testUsers = fakeUsers{
	users:  map[string][2]uint32{"app": {1000, 1000}, "1000": {1000, 1000}, "www": {33, 33}},
	groups: map[string]uint32{"staff": 50, "app": 1000},
}

func baseInput() BundleInput {
	return BundleInput{
		ID:       "web-0-3f9a2c",
		Rootfs:   "/var/lib/gantry/instances/web-0-3f9a2c/rootfs",
		InitPath: "/var/lib/gantry/bin/gantry-init",
		Users:    testUsers,
		Image: ImageConfig{
			Entrypoint: []string{"/docker-entrypoint.sh"},
			Cmd:        []string{"nginx", "-g", "daemon off;"},
			Env:        []string{"PATH=/usr/sbin:/usr/bin", "NGINX_VERSION=1.25"},
			WorkingDir: "/srv",
		},
	}
}

func TestBuildSpecGolden(t *testing.T) {
	in := baseInput()
	in.Hostname = "web-0"
	in.NetNS = "/run/gantry/netns/web-0-3f9a2c"
	in.Service = spec.Service{
		Name:      "web",
		Env:       map[string]string{"NGINX_VERSION": "override", "A": "1"},
		User:      "app:staff",
		CapAdd:    []string{"net_bind_service", "CAP_CHOWN", "NET_BIND_SERVICE"},
		Resources: spec.Resources{CPU: 250, Memory: 64 << 20, Pids: 100},
	}
	in.Mounts = []specs.Mount{
		{Destination: "/etc/resolv.conf", Type: "bind", Source: "/var/lib/gantry/instances/web-0-3f9a2c/resolv.conf", Options: []string{"rbind", "ro"}},
		{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/gantry/instances/web-0-3f9a2c/hosts", Options: []string{"rbind", "ro"}},
	}
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "web.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./runtime -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("BuildSpec output differs from %s (go test -run Golden -update to accept):\n%s", golden, got)
	}
	// Building twice gives the same bytes (map iteration does not leak).
	s2, _ := BuildSpec(in)
	again, _ := json.MarshalIndent(s2, "", "  ")
	if !bytes.Equal(append(again, '\n'), got) {
		t.Error("BuildSpec is not deterministic")
	}
}

func TestBuildSpecArgs(t *testing.T) {
	noInit := boolp(false)
	for _, tc := range []struct {
		name       string
		entry, cmd []string
		command    []string
		args       []string
		init       *bool
		want       []string
		wantErr    bool
	}{
		{name: "image entrypoint and cmd", entry: []string{"/ep"}, cmd: []string{"a"}, init: noInit, want: []string{"/ep", "a"}},
		{name: "image cmd only", cmd: []string{"nginx"}, init: noInit, want: []string{"nginx"}},
		{name: "command drops image cmd", entry: []string{"/ep"}, cmd: []string{"a"}, command: []string{"sh"}, init: noInit, want: []string{"sh"}},
		{name: "command and args", entry: []string{"/ep"}, cmd: []string{"a"}, command: []string{"sh"}, args: []string{"-c", "x"}, init: noInit, want: []string{"sh", "-c", "x"}},
		{name: "args replace cmd", entry: []string{"/ep"}, cmd: []string{"a"}, args: []string{"b"}, init: noInit, want: []string{"/ep", "b"}},
		{name: "args without entrypoint", cmd: []string{"a"}, args: []string{"b", "c"}, init: noInit, want: []string{"b", "c"}},
		{name: "init wraps", cmd: []string{"a"}, want: []string{InitMountPath, "--", "a"}},
		{name: "nothing to run", wantErr: true},
		{name: "nothing to run with init", entry: nil, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			in.Image = ImageConfig{Entrypoint: tc.entry, Cmd: tc.cmd}
			in.Service = spec.Service{Command: tc.command, Args: tc.args, Init: tc.init}
			s, err := BuildSpec(in)
			if tc.wantErr {
				if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "set command") {
					t.Fatalf("err = %v, want ErrInvalid telling to set command", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.Args, tc.want) {
				t.Errorf("args = %q, want %q", s.Process.Args, tc.want)
			}
		})
	}
}

func TestBuildSpecInitMount(t *testing.T) {
	in := baseInput()
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	last := s.Mounts[len(s.Mounts)-1]
	want := specs.Mount{Destination: InitMountPath, Type: "bind", Source: in.InitPath, Options: []string{"bind", "ro", "nosuid", "nodev"}}
	if !reflect.DeepEqual(last, want) {
		t.Errorf("init mount = %+v, want %+v", last, want)
	}
	in.Service.Init = boolp(false)
	s, _ = BuildSpec(in)
	for _, m := range s.Mounts {
		if m.Destination == InitMountPath {
			t.Error("init mounted although disabled")
		}
	}
	in.Service.Init = nil
	in.InitPath = ""
	if _, err := BuildSpec(in); !errdefs.IsInvalid(err) {
		t.Errorf("init enabled without InitPath: err = %v, want ErrInvalid", err)
	}
}

func TestBuildSpecEnv(t *testing.T) {
	in := baseInput()
	in.Hostname = "h1"
	in.Image.Env = []string{"B=image", "A=image", "EMPTY=", "NOVALUE"}
	in.Service.Env = map[string]string{"B": "spec", "C": "x=y"}
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=image", "B=spec", "C=x=y", "EMPTY=", "HOSTNAME=h1", "NOVALUE=", "PATH=" + DefaultPath}
	if !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env = %q, want %q", s.Process.Env, want)
	}
	in.Service.Env = map[string]string{"PATH": "/bin", "HOSTNAME": "mine"}
	s, _ = BuildSpec(in)
	want = []string{"A=image", "B=image", "EMPTY=", "HOSTNAME=mine", "NOVALUE=", "PATH=/bin"}
	if !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env = %q, want %q", s.Process.Env, want)
	}
}

func TestBuildSpecCwd(t *testing.T) {
	in := baseInput()
	for _, tc := range []struct{ spec, image, want string }{
		{"", "", "/"}, {"", "/srv", "/srv"}, {"/app", "/srv", "/app"},
	} {
		in.Service.Workdir, in.Image.WorkingDir = tc.spec, tc.image
		s, err := BuildSpec(in)
		if err != nil {
			t.Fatal(err)
		}
		if s.Process.Cwd != tc.want {
			t.Errorf("spec %q image %q: cwd %q, want %q", tc.spec, tc.image, s.Process.Cwd, tc.want)
		}
	}
}

func TestBuildSpecUser(t *testing.T) {
	for _, tc := range []struct {
		spec, image string
		noUsers     bool
		want        specs.User
		errHas      string
	}{
		{spec: "", image: "", want: specs.User{}},
		{spec: "", image: "www", want: specs.User{UID: 33, GID: 33}},
		{spec: "app", image: "www", want: specs.User{UID: 1000, GID: 1000}},
		{spec: "1000", want: specs.User{UID: 1000, GID: 1000}},
		{spec: "4242", want: specs.User{UID: 4242, GID: 0}},
		{spec: "4242:7", want: specs.User{UID: 4242, GID: 7}},
		{spec: "app:staff", want: specs.User{UID: 1000, GID: 50}},
		{spec: "app:9", want: specs.User{UID: 1000, GID: 9}},
		{spec: "5:staff", want: specs.User{UID: 5, GID: 50}},
		{spec: "4242:7", noUsers: true, want: specs.User{UID: 4242, GID: 7}},
		{spec: "nobody", errHas: `user "nobody"`},
		{spec: "app:wheel", errHas: `group "wheel"`},
		{spec: "app", noUsers: true, errHas: `user "app"`},
		{spec: ":5", errHas: "want uid"},
		{spec: "app:", errHas: "want uid"},
		{spec: "99999999999", errHas: `user "99999999999"`},
	} {
		t.Run(tc.spec+"/"+tc.image, func(t *testing.T) {
			in := baseInput()
			in.Service.User, in.Image.User = tc.spec, tc.image
			if tc.noUsers {
				in.Users = nil
			}
			s, err := BuildSpec(in)
			if tc.errHas != "" {
				if !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want ErrInvalid naming %s", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.User, tc.want) {
				t.Errorf("user = %+v, want %+v", s.Process.User, tc.want)
			}
		})
	}
}

func TestBuildSpecCapabilities(t *testing.T) {
	in := baseInput()
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Process.Capabilities
	if c == nil || len(c.Bounding)+len(c.Effective)+len(c.Permitted)+len(c.Inheritable)+len(c.Ambient) != 0 {
		t.Errorf("default capabilities = %+v, want all empty (and the struct present)", c)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("noNewPrivileges not set")
	}

	in.Service.CapAdd = []string{"sys_time", "CAP_NET_ADMIN", "net_admin"}
	s, _ = BuildSpec(in)
	want := []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}
	c = s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted, "inheritable": c.Inheritable} {
		if !reflect.DeepEqual(set, want) {
			t.Errorf("%s = %q, want %q", name, set, want)
		}
	}
	if len(c.Ambient) != 0 {
		t.Errorf("root process got ambient %q", c.Ambient)
	}
	in.Service.User = "app"
	s, _ = BuildSpec(in)
	if !reflect.DeepEqual(s.Process.Capabilities.Ambient, want) {
		t.Errorf("non-root ambient = %q, want %q", s.Process.Capabilities.Ambient, want)
	}

	in.Service.CapAdd = []string{"ALL"}
	s, _ = BuildSpec(in)
	if n := len(s.Process.Capabilities.Bounding); n != len(knownCaps) {
		t.Errorf("ALL gave %d capabilities, want %d", n, len(knownCaps))
	}
	in.Service.CapAdd = []string{"NET_BIND_SERVCE"}
	if _, err := BuildSpec(in); !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), "NET_BIND_SERVCE") {
		t.Errorf("typo capability: err = %v, want ErrInvalid naming it", err)
	}
}

func TestBuildSpecResources(t *testing.T) {
	in := baseInput()
	s, _ := BuildSpec(in)
	r := s.Linux.Resources
	if r.CPU != nil || r.Memory != nil || r.Pids != nil {
		t.Errorf("no limits asked, got %+v", r)
	}
	if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
		t.Errorf("devices do not start with deny-all: %+v", r.Devices)
	}
	if s.Linux.CgroupsPath != "/gantry/web-0-3f9a2c" {
		t.Errorf("cgroupsPath = %q", s.Linux.CgroupsPath)
	}
	in.Service.Resources = spec.Resources{CPU: 1500, Memory: 16 << 20, Pids: 64}
	in.CgroupsPath = "/custom/x"
	s, _ = BuildSpec(in)
	r = s.Linux.Resources
	if *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 1536 {
		t.Errorf("cpu = quota %d period %d shares %d, want 150000 100000 1536", *r.CPU.Quota, *r.CPU.Period, *r.CPU.Shares)
	}
	if *r.Memory.Limit != 16<<20 || *r.Memory.Swap != 16<<20 {
		t.Errorf("memory = %d swap %d, want 16Mi both", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.Pids.Limit != 64 {
		t.Errorf("pids = %d", *r.Pids.Limit)
	}
	if s.Linux.CgroupsPath != "/custom/x" {
		t.Errorf("cgroupsPath = %q", s.Linux.CgroupsPath)
	}
	in.Service.Resources = spec.Resources{CPU: 1}
	s, _ = BuildSpec(in)
	if *s.Linux.Resources.CPU.Shares != 2 || *s.Linux.Resources.CPU.Quota != 100 {
		t.Errorf("1m cpu: shares %d quota %d, want 2 and 100", *s.Linux.Resources.CPU.Shares, *s.Linux.Resources.CPU.Quota)
	}
}

func TestBuildSpecMountsAndNamespaces(t *testing.T) {
	in := baseInput()
	in.Mounts = []specs.Mount{{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"size=1g"}}}
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	var shm []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == "/dev/shm" {
			shm = append(shm, m)
		}
	}
	if len(shm) != 1 || shm[0].Options[0] != "size=1g" {
		t.Errorf("/dev/shm mounts = %+v, want only the replacement", shm)
	}
	var netns specs.LinuxNamespace
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			netns = ns
		}
	}
	if netns.Type == "" || netns.Path != "" {
		t.Errorf("network namespace = %+v, want a new one", netns)
	}
	if s.Root.Readonly {
		t.Error("rootfs read-only")
	}
	if s.Linux.Seccomp != nil {
		t.Error("seccomp set; the default profile is future work")
	}
	if _, err := BuildSpec(BundleInput{ID: "x", Rootfs: "relative", Service: spec.Service{Command: []string{"a"}}}); !errdefs.IsInvalid(err) {
		t.Errorf("relative rootfs: err = %v", err)
	}
}

func TestUsersFromRootfs(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "# comment\nroot:x:0:0:root:/root:/bin/sh\n\nbad line\napp:x:1000:1001::/home/app:/bin/sh\nneg:x:-1:0::/:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\nstaff:x:50:app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := UsersFromRootfs(root)
	if uid, gid, err := u.LookupUser("app"); err != nil || uid != 1000 || gid != 1001 {
		t.Errorf("app = %d:%d %v", uid, gid, err)
	}
	if uid, gid, err := u.LookupUser("1000"); err != nil || uid != 1000 || gid != 1001 {
		t.Errorf("uid 1000 = %d:%d %v", uid, gid, err)
	}
	if _, _, err := u.LookupUser("neg"); !errdefs.IsNotFound(err) {
		t.Errorf("malformed entry: %v", err)
	}
	if g, err := u.LookupGroup("staff"); err != nil || g != 50 {
		t.Errorf("staff = %d %v", g, err)
	}
	if _, err := u.LookupGroup("wheel"); !errdefs.IsNotFound(err) {
		t.Errorf("wheel: %v", err)
	}

	// A symlink cannot lead out of the rootfs: /etc/passwd -> /etc/shadow-like
	// host path is resolved inside root, where it does not exist.
	evil := t.TempDir()
	if err := os.MkdirAll(filepath.Join(evil, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(t.TempDir(), "host-passwd")
	if err := os.WriteFile(hostFile, []byte("hostuser:x:7:7::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostFile, filepath.Join(evil, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../.."+hostFile, filepath.Join(evil, "etc", "group")); err != nil {
		t.Fatal(err)
	}
	e := UsersFromRootfs(evil)
	if _, _, err := e.LookupUser("hostuser"); err == nil {
		t.Error("absolute symlink escaped the rootfs")
	}
	if _, err := e.LookupGroup("hostuser"); err == nil {
		t.Error("relative symlink escaped the rootfs")
	}
	// No /etc at all: not found.
	if _, _, err := UsersFromRootfs(t.TempDir()).LookupUser("app"); !errdefs.IsNotFound(err) {
		t.Errorf("no /etc/passwd: %v", err)
	}
}
