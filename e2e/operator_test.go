package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
)

// On gantry dev (one voter) the Raft verbs show one peer and refuse what
// would break the cluster.
func TestOperatorRaftOnDev(t *testing.T) {
	d := startDev(t)
	out, err := d.cli("operator", "raft", "peers")
	if err != nil || !strings.Contains(out, "voter") || !strings.Contains(out, "leader") || !strings.Contains(out, "1 voter(s), quorum 1") {
		t.Fatalf("operator raft peers: %v\n%s", err, out)
	}
	var peers api.RaftPeerList
	d.call(api.ToolRaftPeers, nil, &peers)
	if len(peers.Peers) != 1 || peers.Leader != peers.Peers[0].ID {
		t.Fatalf("raft_peers = %+v", peers)
	}
	self := peers.Leader
	for _, args := range [][]string{{"remove-peer", self, "--dry-run"}, {"remove-peer", self, "--force"}} {
		out, err := d.cli(append([]string{"operator", "raft"}, args...)...)
		if err == nil || !strings.Contains(out, "last voter") {
			t.Errorf("operator raft %v: %v\n%s", args, err, out)
		}
	}
	if out, err := d.cli("operator", "raft", "transfer-leader"); err == nil || !strings.Contains(out, "no other voter") {
		t.Errorf("operator raft transfer-leader: %v\n%s", err, out)
	}
	d.call(api.ToolRaftPeers, nil, &peers)
	if len(peers.Peers) != 1 || peers.Leader != self {
		t.Errorf("after the refusals, raft_peers = %+v", peers)
	}
}

// A snapshot saved from one gantry dev, after which the service is removed,
// restores into a fresh gantry dev with the service, its history and the
// tokens; a damaged file is refused there and changes nothing.
func TestSnapshotSaveRestoreIntoFreshDev(t *testing.T) {
	ref := webImage(t)
	d := startDev(t)
	svc := `name: snapped
image: ` + ref + `
command: ["/bin/httpd"]
args: ["-f", "-p", "8080", "-h", "/www"]
resources: {cpu: 50m, memory: 16Mi, pids: 32}
`
	d.deploy(svc)
	d.deploy(strings.Replace(svc, "pids: 32", "pids: 40", 1))
	d.waitFor("snapped", 90*time.Second, "1 running instance", running(1))
	out, err := d.cli("token", "create", "--name", "snap-reader", "--scope", "read")
	tok := regexp.MustCompile(`gty_[0-9a-f]+_[0-9a-f]{64}`).FindString(out)
	if err != nil || tok == "" {
		t.Fatalf("gantry token create: %v\n%s", err, out)
	}

	file := filepath.Join(t.TempDir(), "state.snap")
	out, err = d.cli("snapshot", "save", file)
	if err != nil || !strings.Contains(out, "saved "+file) || !strings.Contains(out, "1 services, 2 versions of history") {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v, want mode 0600", fi, err)
	}
	if out, err := d.cli("rm", "snapped"); err != nil {
		t.Fatalf("rm: %v\n%s", err, out)
	}

	fresh := startDev(t)
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.snap")
	damaged := append([]byte(nil), raw...)
	damaged[len(damaged)-10] ^= 0x55
	if err := os.WriteFile(bad, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	var before api.ClusterStatus
	fresh.call(api.ToolClusterStatus, nil, &before)
	if out, err := fresh.cli("snapshot", "restore", bad); err == nil || !strings.Contains(out, "corrupt") {
		t.Errorf("restore of a damaged file: %v\n%s", err, out)
	}
	if out, err := fresh.cli("snapshot", "restore", file, "--dry-run"); err != nil || !strings.Contains(out, "dry run") || !strings.Contains(out, "1 services") {
		t.Errorf("restore --dry-run: %v\n%s", err, out)
	}
	var after api.ClusterStatus
	fresh.call(api.ToolClusterStatus, nil, &after)
	if after.Services != 0 || before.Services != 0 {
		t.Fatalf("a refused or dry-run restore changed the state: %d services", after.Services)
	}

	if out, err := fresh.cli("snapshot", "restore", file); err != nil || !strings.Contains(out, "restored the snapshot") {
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	var hist api.History
	fresh.call(api.ToolServiceHistory, map[string]any{"name": "snapped"}, &hist)
	if len(hist.Versions) != 2 || hist.Current != 2 {
		t.Errorf("restored history = %+v, want versions 1 and 2", hist)
	}
	if out, err := fresh.cliAs(tok, "ps"); err != nil || !strings.Contains(out, "snapped") {
		t.Errorf("the token made before the snapshot, on the fresh dev: %v\n%s", err, out)
	}
	fresh.waitFor("snapped", 90*time.Second, "the restored service running", running(1))
}
