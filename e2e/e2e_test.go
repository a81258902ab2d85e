package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/image/imagetest"
)

// webImage pushes a busybox image with a page and a CGI script that says
// which instance answered.
func webImage(t *testing.T) string {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
	reg := imagetest.Registry(t)
	img := imagetest.Busybox(t, map[string]string{
		"/www/index.html":    "<h1>gantry e2e</h1>\n",
		"/www/cgi-bin/hello": "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$GREETING from $(hostname)\"\n",
	})
	ref := reg + "/e2e/web:1"
	imagetest.PushImage(t, img, ref)
	return ref
}

func running(want int) func(api.ServiceStatus) bool {
	return func(s api.ServiceStatus) bool { return s.Running == want && len(s.Instances) == want }
}

func TestTwoReplicasAnswerOnPublishedPorts(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	r := d.deploy(fmt.Sprintf(`
name: web
image: %s
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
env: {GREETING: hello}
replicas: 2
ports: [{name: http, port: 8080}]
resources: {cpu: 100m, memory: 32Mi, pids: 64}
health: {http: {port: http, path: /}, interval: 1s, timeout: 1s, failures: 3}
`, ref))
	if !r.Created || r.Version != 1 || r.Desired != 2 {
		t.Fatalf("deploy result: %+v", r)
	}
	s := d.waitFor("web", 60*time.Second, "2 healthy replicas", running(2))
	seen := map[string]bool{}
	ports := map[int]bool{}
	for _, in := range s.Instances {
		hp := in.Ports["http"]
		if hp == 0 || ports[hp] {
			t.Fatalf("instance %s: bad or clashing host port %d (%v)", in.ID, hp, in.Ports)
		}
		ports[hp] = true
		if in.IP == "" || in.ImageDigest == "" || !strings.HasPrefix(in.ImageDigest, "sha256:") {
			t.Fatalf("instance %s lacks ip or digest: %+v", in.ID, in)
		}
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/hello", hp))
		if err != nil {
			t.Fatalf("GET via published port %d: %v", hp, err)
		}
		want := "hello from " + in.ID
		if !strings.Contains(body, want) {
			t.Fatalf("port %d answered %q, want %q", hp, body, want)
		}
		seen[in.ID] = true
	}
	if len(seen) != 2 {
		t.Fatalf("want 2 distinct replicas, got %v", seen)
	}
	// Containers reach each other by IP.
	a, b := s.Instances[0], s.Instances[1]
	out, err := exec.Command("runc", "--root", d.runDir+"/runc", "exec", a.ID,
		"wget", "-q", "-O-", "http://"+b.IP+":8080/cgi-bin/hello").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from "+b.ID) {
		t.Fatalf("instance %s could not reach %s at %s: %v %s", a.ID, b.ID, b.IP, err, out)
	}
	// Security defaults: no capabilities, no new privileges.
	status, err := exec.Command("runc", "--root", d.runDir+"/runc", "exec", a.ID, "cat", "/proc/1/status").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`CapEff:\s+0+\n`).Match(status) || !regexp.MustCompile(`NoNewPrivs:\s+1`).Match(status) {
		t.Fatalf("want no effective capabilities and no_new_privs:\n%s", status)
	}

	// The CLI's status -o json has the documented fields.
	js, err := d.cli("status", "web", "-o", "json")
	if err != nil {
		t.Fatalf("gantry status: %v\n%s", err, js)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, js)
	}
	for _, k := range []string{"name", "desired", "running", "instances"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("status -o json lacks %q: %s", k, js)
		}
	}
	inst := st["instances"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "state", "restarts", "ip", "ports"} {
		if _, ok := inst[k]; !ok {
			t.Fatalf("instance lacks %q: %v", k, inst)
		}
	}
	psOut, err := d.cli("ps")
	if err != nil || !strings.Contains(psOut, a.ID) || !strings.Contains(psOut, b.ID) {
		t.Fatalf("gantry ps: %v\n%s", err, psOut)
	}
}

// tarLayer builds a layer from (name, content) pairs; content "" with a
// trailing slash in the name makes a directory.
func tarLayer(t *testing.T, files [][2]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if strings.HasSuffix(f[0], "/") {
			hdr = &tar.Header{Name: f[0], Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f[1]); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestUpperLayerDeletionIsHidden(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	reg := imagetest.Registry(t)
	base := imagetest.Busybox(t, nil)
	img, err := mutate.AppendLayers(base,
		tarLayer(t, [][2]string{{"data/", ""}, {"data/deleted.txt", "x"}, {"data/kept.txt", "y"}, {"opq/", ""}, {"opq/old.txt", "o"}}),
		tarLayer(t, [][2]string{{"data/", ""}, {"data/.wh.deleted.txt", ""}, {"opq/", ""}, {"opq/.wh..wh..opq", ""}, {"opq/new.txt", "n"}}))
	if err != nil {
		t.Fatal(err)
	}
	ref := reg + "/e2e/whiteout:1"
	imagetest.PushImage(t, img, ref)
	d := startDev(t)
	d.deploy(fmt.Sprintf(`
name: wh
image: %s
command: ["sh", "-c", "echo LIST $(ls /data /opq | tr '\n' ' '); echo END; sleep 1000"]
`, ref))
	d.waitFor("wh", 60*time.Second, "running", running(1))
	var logs api.LogsResult
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.call("service_logs", map[string]any{"name": "wh"}, &logs)
		if len(logs.Instances) == 1 && strings.Contains(strings.Join(logs.Instances[0].Lines, "\n"), "END") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output: %+v", logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := strings.Join(logs.Instances[0].Lines, "\n")
	if strings.Contains(out, "deleted.txt") || strings.Contains(out, "old.txt") {
		t.Fatalf("a file deleted by the upper layer is visible: %s", out)
	}
	if !strings.Contains(out, "kept.txt") || !strings.Contains(out, "new.txt") {
		t.Fatalf("files that should be visible are missing: %s", out)
	}
}

func TestCrashLoopBacksOffWithGrowingDelays(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf(`
name: crash
image: %s
command: ["sh", "-c", "echo boom; exit 1"]
restart: always
`, ref))
	startsOf := func(s api.ServiceStatus) int {
		n := 0
		for _, ev := range s.Events {
			if ev.Type == "Started" {
				n++
			}
		}
		return n
	}
	// Restarts counts up when the backoff ends, just before the start: wait
	// for the fourth start itself.
	s := d.waitFor("crash", 40*time.Second, "3 restarts", func(s api.ServiceStatus) bool {
		return len(s.Instances) == 1 && s.Instances[0].Restarts >= 3 && startsOf(s) >= 4 && s.Instances[0].ExitCode != nil
	})
	in := s.Instances[0]
	if in.ExitCode == nil || *in.ExitCode != 1 || in.Reason != "Error" {
		t.Fatalf("last exit: code %v reason %q", in.ExitCode, in.Reason)
	}
	// Started events: the gaps between starts grow.
	var starts []time.Time
	for _, ev := range s.Events {
		if ev.Type == "Started" {
			starts = append(starts, ev.Time)
		}
	}
	if len(starts) < 4 {
		t.Fatalf("want at least 4 starts, events: %+v", s.Events)
	}
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, starts[i].Sub(starts[i-1]))
	}
	for i := 1; i < len(gaps); i++ {
		if gaps[i] <= gaps[i-1] {
			t.Fatalf("restart delays do not grow: %v", gaps)
		}
	}
	s = d.waitFor("crash", 20*time.Second, "crash loop state", func(s api.ServiceStatus) bool {
		return len(s.Instances) == 1 && s.Instances[0].State == "crashloop"
	})
	if !strings.Contains(s.Instances[0].Message, "crash loop") {
		t.Fatalf("crash loop not explained: %q", s.Instances[0].Message)
	}
}

// The acceptance case shared/cases/oom-vs-kill.md.
func TestOOMKillVersusPlainKill(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf(`
name: hog
image: %s
command: ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); sleep 100"]
resources: {memory: 16Mi}
restart: never
`, ref))
	d.deploy(fmt.Sprintf(`
name: selfkill
image: %s
command: ["sh", "-c", "kill -9 $$"]
resources: {memory: 32Mi}
restart: never
`, ref))
	exitedWith := func(s api.ServiceStatus) bool {
		return len(s.Instances) == 1 && s.Instances[0].ExitCode != nil
	}
	hog := d.waitFor("hog", 60*time.Second, "an exit", exitedWith).Instances[0]
	if *hog.ExitCode != 137 || hog.Reason != "OOMKilled" {
		t.Fatalf("memory hog: exit %d reason %q, want 137 OOMKilled", *hog.ExitCode, hog.Reason)
	}
	self := d.waitFor("selfkill", 60*time.Second, "an exit", exitedWith).Instances[0]
	if *self.ExitCode != 137 || self.Reason == "OOMKilled" {
		t.Fatalf("kill -9: exit %d reason %q, want 137 and not OOMKilled", *self.ExitCode, self.Reason)
	}
	// Same answer in the CLI's JSON and in the service's events.
	js, err := d.cli("status", "hog", "-o", "json")
	if err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	var st api.ServiceStatus
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	if st.Instances[0].Reason != "OOMKilled" || *st.Instances[0].ExitCode != 137 {
		t.Fatalf("CLI status: %s", js)
	}
	found := false
	for _, ev := range d.service("hog").Events {
		found = found || ev.Type == "OOMKilled"
	}
	if !found {
		t.Fatal("no OOMKilled event for the memory hog")
	}
	for _, ev := range d.service("selfkill").Events {
		if ev.Type == "OOMKilled" {
			t.Fatal("the self-killed instance has an OOMKilled event")
		}
	}
}

func TestSIGKILLedGantryReadoptsContainers(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf(`
name: web
image: %s
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
replicas: 2
ports: [{name: http, port: 8080}]
health: {http: {port: http}, interval: 1s}
`, ref))
	before := d.waitFor("web", 60*time.Second, "2 healthy", running(2))
	ids := map[string]api.InstanceStatus{}
	for _, in := range before.Instances {
		ids[in.ID] = in
	}
	ctrs := d.runcContainers()
	if len(ctrs) != 2 {
		t.Fatalf("runc containers before: %v", ctrs)
	}
	d.kill9()
	// The containers outlive gantry.
	for _, in := range before.Instances {
		if _, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", in.Ports["http"])); err != nil {
			t.Fatalf("instance %s died with gantry: %v", in.ID, err)
		}
	}
	d.start()
	after := d.waitFor("web", 30*time.Second, "2 healthy after restart", running(2))
	for _, in := range after.Instances {
		old, ok := ids[in.ID]
		if !ok {
			t.Fatalf("instance %s is new: re-adoption failed (before: %v)", in.ID, ids)
		}
		if old.Ports["http"] != in.Ports["http"] || old.IP != in.IP {
			t.Fatalf("instance %s changed address: %+v -> %+v", in.ID, old, in)
		}
		if in.Restarts != old.Restarts {
			t.Fatalf("instance %s was restarted instead of adopted", in.ID)
		}
	}
	// Give the worker time to (wrongly) start extras, then check for none.
	time.Sleep(2 * time.Second)
	if got := d.runcContainers(); len(got) != 2 {
		t.Fatalf("runc containers after restart: %v (want the same 2)", got)
	}
}

func TestRemoveLeavesNothingBehind(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf(`
name: gone
image: %s
command: ["/bin/httpd"]
args: ["-f", "-p", "8080"]
replicas: 2
ports: [{name: http, port: 8080}]
`, ref))
	s := d.waitFor("gone", 60*time.Second, "2 running", running(2))
	out, err := d.cli("rm", "gone")
	if err != nil {
		t.Fatalf("gantry rm: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(d.runcContainers()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("containers left: %v", d.runcContainers())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Records go once cleanup is done.
	deadline = time.Now().Add(10 * time.Second)
	for {
		var list api.ServiceList
		d.call("list_services", map[string]any{}, &list)
		if len(list.Services) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service still listed: %+v", list)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	nat, _ := exec.Command("iptables-save").Output()
	for _, in := range s.Instances {
		if strings.Contains(string(mounts), in.ID) {
			t.Errorf("mount of %s left behind", in.ID)
		}
		if _, err := os.Stat(d.runDir + "/netns/" + in.ID); err == nil {
			t.Errorf("netns of %s left behind", in.ID)
		}
		if strings.Contains(string(nat), in.ID) || strings.Contains(string(nat), in.IP+"/") || strings.Contains(string(nat), in.IP+":") {
			t.Errorf("iptables rules of %s (%s) left behind", in.ID, in.IP)
		}
		if _, err := os.Stat(d.dataDir + "/instances/" + in.ID); err == nil {
			t.Errorf("instance dir of %s left behind", in.ID)
		}
		if _, err := os.Stat("/sys/fs/cgroup/memory/gantry/" + in.ID); err == nil {
			t.Errorf("cgroup of %s left behind", in.ID)
		}
	}
}

func TestInvalidSpecChangesNothing(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	good := fmt.Sprintf("name: keep\nimage: %s\ncommand: [sleep, \"1000\"]\n", ref)
	d.deploy(good)
	before := d.service("keep")
	bad := fmt.Sprintf("name: keep\nimage: %s\nreplicas: -2\nports:\n  - {name: http, port: 70000}\nrestart: sometimes\n", ref)
	err := d.callErr("deploy", map[string]any{"spec_yaml": bad}, nil)
	if err == nil {
		t.Fatal("invalid spec accepted")
	}
	msg := err.Error()
	for _, want := range []string{"replicas", "line 3", "ports[0].port", "restart"} {
		if !strings.Contains(msg, want) && !(want == "line 3" && strings.Contains(msg, ":3:")) {
			t.Fatalf("error lacks %q:\n%s", want, msg)
		}
	}
	after := d.service("keep")
	if after.Version != before.Version || after.Desired != before.Desired {
		t.Fatalf("invalid spec changed the service: %+v -> %+v", before, after)
	}
	// The CLI reports file:line.
	f := t.TempDir() + "/bad.yaml"
	os.WriteFile(f, []byte(bad), 0o644)
	out, err := d.cli("deploy", "-f", f)
	var ee *exec.ExitError
	if err == nil || !errorsAs(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("CLI accepted an invalid spec: %s", out)
	}
	if !strings.Contains(out, "bad.yaml:3") {
		t.Fatalf("CLI error lacks file:line:\n%s", out)
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// crun refuses cgroup v1 hybrid hosts; gantry must say so before doing
// anything else.
func TestUnusableRuntimeFailsClearly(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	dir := t.TempDir()
	// Its own run dir and bridge: with the defaults, a gantry dev the user
	// runs (make demo KEEP=1) holds their locks and the refusal would be
	// about those, not the runtime.
	own := []string{"--run-dir", filepath.Join(dir, "run"), "--bridge", fmt.Sprintf("gu%d", os.Getpid()%100000)}
	cmd := exec.Command(gantryBin, append([]string{"dev", "--data-dir", dir, "--listen", "127.0.0.1:1", "--oci-runtime", "/nonexistent/runc"}, own...)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nonexistent/runc") || !strings.Contains(string(out), "not found") {
		t.Fatalf("missing runtime: err %v\n%s", err, out)
	}
	if !has("crun") || !exists("/sys/fs/cgroup/unified/cgroup.controllers") {
		t.Skip("crun not installed or host not in cgroup v1 hybrid mode")
	}
	out, err = exec.Command(gantryBin, append([]string{"dev", "--data-dir", dir, "--listen", "127.0.0.1:1", "--oci-runtime", "crun"}, own...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "crun") || !strings.Contains(string(out), "hybrid") {
		t.Fatalf("crun on a hybrid host: err %v\n%s", err, out)
	}
}

// A docker-save tarball is imported through the CLI and runs with no
// registry at all.
func TestImageImportRunsWithoutRegistry(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	img := imagetest.Busybox(t, map[string]string{"/hello.txt": "imported\n"})
	tarPath := t.TempDir() + "/img.tar"
	tag, err := name.NewTag("local.test/e2e/imported:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
		t.Fatal(err)
	}
	d := startDev(t)
	out, err := d.cli("image", "import", tarPath)
	if err != nil || !strings.Contains(out, "local.test/e2e/imported:1") {
		t.Fatalf("image import: %v\n%s", err, out)
	}
	out, err = d.cli("image", "ls")
	if err != nil || !strings.Contains(out, "local.test/e2e/imported:1") {
		t.Fatalf("image ls: %v\n%s", err, out)
	}
	f := t.TempDir() + "/svc.yaml"
	os.WriteFile(f, []byte("name: imp\nimage: local.test/e2e/imported:1\ncommand: [sh, -c, 'cat /hello.txt; sleep 1000']\n"), 0o644)
	out, err = d.cli("deploy", "-f", f, "--timeout", "60s")
	if err != nil {
		t.Fatalf("deploy of an imported image: %v\n%s\n%s", err, out, d.log())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ = d.cli("logs", "imp")
		if strings.Contains(out, "imported") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gantry logs imp: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop sends the spec's signal and waits the grace period before SIGKILL.
func TestStopSignalAndGrace(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf("name: polite\nimage: %s\ncommand: [sh, -c, 'trap \"exit 0\" USR1; while true; do sleep 0.1; done']\nstop: {signal: SIGUSR1, grace: 20s}\n", ref))
	d.deploy(fmt.Sprintf("name: stubborn\nimage: %s\ncommand: [sh, -c, 'trap \"\" TERM; while true; do sleep 0.1; done']\nstop: {grace: 2s}\n", ref))
	d.waitFor("polite", 60*time.Second, "running", running(1))
	d.waitFor("stubborn", 60*time.Second, "running", running(1))
	stopTime := func(name string) time.Duration {
		id := d.service(name).Instances[0].ID
		start := time.Now()
		d.call("scale_service", map[string]any{"name": name, "replicas": 0}, nil)
		for {
			found := false
			for _, c := range d.runcContainers() {
				found = found || c == id
			}
			if !found {
				return time.Since(start)
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s never stopped", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if dt := stopTime("polite"); dt > 5*time.Second {
		t.Fatalf("a process that exits on the stop signal took %v to stop (grace 20s): the signal was not delivered", dt)
	}
	if dt := stopTime("stubborn"); dt < 2*time.Second || dt > 10*time.Second {
		t.Fatalf("a process ignoring SIGTERM stopped after %v; want the 2s grace, then SIGKILL", dt)
	}
}

// An instance whose check starts failing is restarted.
func TestUnhealthyInstanceIsRestarted(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf(`
name: flaky
image: %s
command: ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 1000"]
health: {exec: {command: [test, -f, /tmp/ok]}, interval: 500ms, timeout: 400ms, failures: 2}
`, ref))
	d.waitFor("flaky", 30*time.Second, "healthy", running(1))
	s := d.waitFor("flaky", 30*time.Second, "a restart for health", func(s api.ServiceStatus) bool {
		return len(s.Instances) == 1 && s.Instances[0].Restarts >= 1
	})
	in := s.Instances[0]
	if in.Reason != "Unhealthy" {
		t.Fatalf("last exit reason %q, want Unhealthy", in.Reason)
	}
	found := false
	for _, ev := range s.Events {
		found = found || ev.Type == "Unhealthy"
	}
	if !found {
		t.Fatalf("no Unhealthy event: %+v", s.Events)
	}
}

// Scaling up and down through the CLI keeps slots unique.
func TestScaleThroughCLI(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf("name: sc\nimage: %s\ncommand: [sleep, '1000']\nreplicas: 1\n", ref))
	d.waitFor("sc", 60*time.Second, "1 running", running(1))
	if out, err := d.cli("scale", "sc", "4"); err != nil {
		t.Fatalf("scale: %v %s", err, out)
	}
	s := d.waitFor("sc", 60*time.Second, "4 running", running(4))
	slots := map[int]bool{}
	for _, in := range s.Instances {
		slots[in.Slot] = true
	}
	if len(slots) != 4 || s.Version != 1 {
		t.Fatalf("slots %v version %d", slots, s.Version)
	}
	if out, err := d.cli("scale", "sc", "2"); err != nil {
		t.Fatalf("scale down: %v %s", err, out)
	}
	d.waitFor("sc", 60*time.Second, "2 running", running(2))
	if got := len(d.runcContainers()); got != 2 {
		time.Sleep(2 * time.Second)
		if got = len(d.runcContainers()); got != 2 {
			t.Fatalf("%d runc containers after scaling to 2", got)
		}
	}
	if out, err := d.cli("scale", "sc", "-1"); err == nil {
		t.Fatalf("scale to -1 accepted: %s", out)
	}
}

// `gantry mcp` bridges stdio to the endpoint for desktop MCP clients: a
// standard client over a command transport lists and calls the tools.
func TestStdioBridge(t *testing.T) {
	d := startDev(t)
	cmd := exec.Command(gantryBin, "mcp")
	cmd.Env = append(os.Environ(), "GANTRY_ADDR=http://"+d.addr+"/mcp", "GANTRY_TOKEN="+d.token)
	client := mcp.NewClient(&mcp.Implementation{Name: "stdio-e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v", err)
	}
	defer s.Close()
	tools, err := s.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tl := range tools.Tools {
		names[tl.Name] = true
		if tl.InputSchema == nil || tl.OutputSchema == nil || tl.Annotations == nil {
			t.Errorf("tool %s lacks a schema or annotations", tl.Name)
		}
	}
	for _, want := range []string{"deploy", "list_services", "get_service", "scale_service", "remove_service", "service_logs", "list_nodes"} {
		if !names[want] {
			t.Errorf("tool %s missing over stdio", want)
		}
	}
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "list_nodes", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("list_nodes over stdio: %v %+v", err, res)
	}
	raw, _ := json.Marshal(res.StructuredContent)
	var nodes api.NodeList
	if err := json.Unmarshal(raw, &nodes); err != nil || len(nodes.Nodes) != 1 || nodes.Nodes[0].Status != "ready" {
		t.Fatalf("nodes: %s", raw)
	}
}

// A crash loop stays slow across a gantry restart: the backoff resumes
// from the failures recorded in state instead of starting again at 1s.
func TestBackoffSurvivesRestart(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	d.deploy(fmt.Sprintf("name: loop\nimage: %s\ncommand: [sh, -c, 'exit 3']\n", ref))
	d.waitFor("loop", 40*time.Second, "crash loop", func(s api.ServiceStatus) bool {
		return len(s.Instances) == 1 && s.Instances[0].State == "crashloop"
	})
	d.kill9()
	d.start()
	s := d.waitFor("loop", 60*time.Second, "a backoff after the restart", func(s api.ServiceStatus) bool {
		n := 0
		for _, ev := range s.Events {
			if ev.Type == "Restarting" {
				n++
			}
		}
		return n >= 4
	})
	var last string
	for _, ev := range s.Events {
		if ev.Type == "Restarting" {
			last = ev.Message
		}
	}
	if !strings.Contains(last, "crash loop (4 failures") && !strings.Contains(last, "crash loop (5 failures") {
		t.Fatalf("backoff restarted from scratch after the gantry restart: %q", last)
	}
}
