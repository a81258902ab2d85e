package network

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The bridge and portmap plugins name their per-container chains
// "CNI-<hash>" and "CNI-DN-<hash>" with hash = sha512(network name + id),
// cut to 28 characters, and tag rules in shared chains with comments holding
// the id. These helpers recompute those names so leftovers can be found.

func chainName(prefix, network, id string) string {
	return fmt.Sprintf("CNI-%s%x", prefix, sha512.Sum512([]byte(network+id)))[:28]
}

// containerChains returns the per-container chains the plugins may create.
func containerChains(network, id string) []string {
	return []string{
		chainName("", network, id),    // bridge ipMasq
		chainName("DN-", network, id), // portmap DNAT
		chainName("SN-", network, id), // portmap SNAT of plugins before 0.7
	}
}

// sweepIPTables deletes every nat rule that belongs to the container id of
// network: rules carrying its comment, rules in or jumping to its chains,
// then the chains themselves. CNI DEL normally leaves nothing, but the
// bridge plugin skips its masquerade teardown when the namespace is already
// gone (and an ADD cut short by a crash leaves no cache to DEL from), so this
// is what makes Teardown leave no rule behind. It returns how many rules and
// chains it removed.
func sweepIPTables(ctx context.Context, network, id string) (int, error) {
	save, err := runIPTables(ctx, "iptables-save", "-t", "nat")
	if err != nil {
		return 0, err
	}
	chains := map[string]bool{}
	for _, c := range containerChains(network, id) {
		chains[c] = true
	}
	comment := fmt.Sprintf("id: %q", id)
	var dels [][]string
	present := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, ":") {
			name, _, _ := strings.Cut(line[1:], " ")
			if chains[name] {
				present[name] = true
			}
			continue
		}
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		args, err := splitSaveLine(line)
		if err != nil || len(args) < 2 {
			continue
		}
		if !ruleMatches(args, chains, comment) {
			continue
		}
		if chains[args[1]] {
			// Rules inside our own chains go with a flush.
			continue
		}
		dels = append(dels, append([]string{"-w", "-t", "nat", "-D"}, args[1:]...))
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read iptables-save output: %w", err)
	}
	n := 0
	for _, d := range dels {
		if _, err := runIPTables(ctx, "iptables", d...); err != nil {
			return n, err
		}
		n++
	}
	for c := range present {
		if _, err := runIPTables(ctx, "iptables", "-w", "-t", "nat", "-F", c); err != nil {
			return n, err
		}
		if _, err := runIPTables(ctx, "iptables", "-w", "-t", "nat", "-X", c); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// ruleMatches reports whether a parsed "-A chain ..." rule concerns the
// container: it lives in or jumps to one of its chains, or its comment names
// the container id.
func ruleMatches(args []string, chains map[string]bool, comment string) bool {
	if chains[args[1]] {
		return true
	}
	for i, a := range args {
		if (a == "-j" || a == "-g") && i+1 < len(args) && chains[args[i+1]] {
			return true
		}
		if a == "--comment" && i+1 < len(args) && strings.Contains(args[i+1], comment) {
			return true
		}
	}
	return false
}

// splitSaveLine splits an iptables-save rule line into arguments, undoing
// its quoting ("..." with backslash escapes).
func splitSaveLine(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg, inQuote := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQuote = !inQuote
			inArg = true
		case !inQuote && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// runIPTables runs an iptables tool, retrying a few times when another
// process holds the xtables lock or changed the ruleset under it.
func runIPTables(ctx context.Context, name string, args ...string) ([]byte, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt*50) * time.Millisecond):
			}
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return out, nil
		}
		lastErr = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		if !isTransientIPTablesError(stderr.String()) {
			break
		}
	}
	return nil, lastErr
}

// isTransientIPTablesError recognises failures caused by concurrent
// iptables users rather than by the rule itself.
func isTransientIPTablesError(msg string) bool {
	msg = strings.ToLower(msg)
	for _, s := range []string{
		"another app is currently holding the xtables lock",
		"resource temporarily unavailable",
		"device or resource busy",
		"chain already exists",
		"file exists",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// localnetGuardRule drops packets that arrive from instances on the bridge
// addressed to 127.0.0.0/8 without being part of a DNATed connection.
// portmap sets route_localnet=1 on the bridge so that 127.0.0.1:<hostPort>
// works from the host; without this rule an instance able to craft packets
// (CAP_NET_RAW) could also reach services the host binds to 127.0.0.1
// (the hole behind CVE-2020-8558; kube-proxy installs the same rule).
func localnetGuardRule(bridge string) []string {
	return []string{
		"INPUT", "-i", bridge, "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
		"-m", "comment", "--comment", "gantry: no localnet access from instances",
		"-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP",
	}
}

// ensureLocalnetGuard installs localnetGuardRule once.
func ensureLocalnetGuard(ctx context.Context, bridge string) error {
	rule := localnetGuardRule(bridge)
	if _, err := runIPTables(ctx, "iptables", append([]string{"-w", "-C"}, rule...)...); err == nil {
		return nil
	}
	_, err := runIPTables(ctx, "iptables", append([]string{"-w", "-I"}, rule...)...)
	return err
}

// removeLocalnetGuard deletes localnetGuardRule, for removing a bridge.
func removeLocalnetGuard(ctx context.Context, bridge string) error {
	_, err := runIPTables(ctx, "iptables", append([]string{"-w", "-D"}, localnetGuardRule(bridge)...)...)
	return err
}

// masqueradeRule gives instances outbound access: traffic from the subnet
// leaving for elsewhere is masqueraded. One rule per network, installed at
// start, instead of the bridge plugin's per-instance chain (ipMasq), which
// costs about eight iptables calls on every attach and detach.
func masqueradeRule(bridge, subnet string) []string {
	return []string{
		"POSTROUTING", "-s", subnet, "!", "-d", subnet,
		"-m", "comment", "--comment", "gantry: masquerade " + bridge,
		"-j", "MASQUERADE",
	}
}

// ensureMasquerade installs masqueradeRule once.
func ensureMasquerade(ctx context.Context, bridge, subnet string) error {
	rule := masqueradeRule(bridge, subnet)
	if _, err := runIPTables(ctx, "iptables", append([]string{"-w", "-t", "nat", "-C"}, rule...)...); err == nil {
		return nil
	}
	_, err := runIPTables(ctx, "iptables", append([]string{"-w", "-t", "nat", "-A"}, rule...)...)
	return err
}

// RemoveNetwork deletes what New installed for a network that will not be
// used again: the bridge device, its guard rule and its masquerade rule.
// Instances must have been torn down first. Missing pieces are not errors.
func RemoveNetwork(ctx context.Context, bridge, subnet string) error {
	_, _ = runIPTables(ctx, "iptables", append([]string{"-w", "-t", "nat", "-D"}, masqueradeRule(bridge, subnet)...)...)
	_ = removeLocalnetGuard(ctx, bridge)
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		if out, err := exec.CommandContext(ctx, "ip", "link", "del", bridge).CombinedOutput(); err != nil {
			return fmt.Errorf("network: delete bridge %s: %v: %s", bridge, err, out)
		}
	}
	return nil
}
