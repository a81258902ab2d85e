package cluster

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/errdefs"
)

// Hostile flags are refused while parsing, with the flag named, before a
// bootstrap writes anything: ports outside 1-65535 or not numbers, join
// addresses that are URLs or have no host, non-positive durations, two
// listeners on one port, and a --bridge that would put its lock file
// outside /run/gantry-bridges.
func TestNodeFlagsRefuseHostileValues(t *testing.T) {
	base := []string{"--name", "s1", "--advertise", "10.0.0.5"}
	server := []struct {
		args []string
		want string
	}{
		{[]string{"--rpc-addr", ":0"}, "--rpc-addr"},
		{[]string{"--rpc-addr", ":65536"}, "--rpc-addr"},
		{[]string{"--rpc-addr", ":abc"}, "--rpc-addr"},
		{[]string{"--rpc-addr", "not-an-ip:7000"}, "--rpc-addr"},
		{[]string{"--raft-addr", ":-1"}, "--raft-addr"},
		{[]string{"--gossip-addr", ":99999"}, "--gossip-addr"},
		{[]string{"--join", "http://10.0.0.1"}, "--join"},
		{[]string{"--join", ""}, "--join"},
		{[]string{"--join", "10.0.0.1:0"}, "--join"},
		{[]string{"--join", "10.0.0.1:70000"}, "--join"},
		{[]string{"--join-timeout", "-1s"}, "--join-timeout"},
		{[]string{"--join-timeout", "0s"}, "--join-timeout"},
		{[]string{"--join-token-ttl", "-1h"}, "--join-token-ttl"},
		{[]string{"--join-token-ttl", "0s"}, "--join-token-ttl"},
		{[]string{"--name", strings.Repeat("a", 255)}, "--name"},
		{[]string{"--rpc-addr", "10.0.0.5:7000", "--raft-addr", "10.0.0.5:7000"}, "same port"},
		{[]string{"--rpc-addr", ":7000", "--gossip-addr", "10.0.0.5:7000"}, "same port"},
	}
	for _, c := range server {
		_, err := ParseServerFlags(append(append([]string{}, base...), c.args...), &bytes.Buffer{})
		if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("server %q: %v, want an invalid-argument error naming %q", c.args, err, c.want)
		}
	}
	worker := []struct {
		args []string
		want string
	}{
		{[]string{"--rpc-addr", ":0"}, "--rpc-addr"},
		{[]string{"--rpc-addr", ":7436"}, "same port"},
		{[]string{"--bridge", "../../etc/evil"}, "--bridge"},
		{[]string{"--bridge", strings.Repeat("b", 16)}, "--bridge"},
		{[]string{"--bridge", ""}, "--bridge"},
		{[]string{"--label", "k=" + strings.Repeat("v", 600)}, "--label"},
		{[]string{"--subnet", "garbage"}, "--subnet"},
		{[]string{"--subnet", "fd00::/64"}, "--subnet"},
		{[]string{"--subnet", "10.0.0.0/30"}, "--subnet"},
	}
	for _, c := range worker {
		_, err := ParseWorkerFlags(append(append([]string{}, base...), c.args...), &bytes.Buffer{})
		if err == nil || !errdefs.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("worker %q: %v, want an invalid-argument error naming %q", c.args, err, c.want)
		}
	}
	if _, err := ParseDevFlags([]string{"--bridge", "../x"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--bridge") {
		t.Errorf("dev --bridge ../x: %v, want refused", err)
	}
	// Good values still pass: IPv6 join addresses and bind addresses.
	o, err := ParseServerFlags(append(append([]string{}, base...), "--join", "[fd00::1]", "--join", "srv-1.example:9000", "--rpc-addr", "[::1]:7000"), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Node.Join) != 2 || o.Node.Join[0] != "[fd00::1]:7434" || o.Node.Join[1] != "srv-1.example:9000" {
		t.Errorf("join %q", o.Node.Join)
	}
}
