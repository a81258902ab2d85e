package network

import (
	"context"
	"fmt"
	"time"
)

// The guard and masquerade rules belong to the network, not to an
// instance: they are installed when the first instance attaches (or at
// start, when instances survived a restart) and removed when the last one
// is torn down, so that nothing of gantry stays in the host's iptables once
// nothing runs. rulesMu serialises that against Setups in flight.

// beginSetup counts a Setup in flight and makes sure the network's rules
// are installed before its CNI ADD. The Setup calls the returned function
// when it ends, with whether it attached; a failed one that leaves no
// attachment behind removes the rules again.
func (m *Manager) beginSetup(ctx context.Context) (func(attached bool), error) {
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if !m.rulesOn {
		if err := installNetworkRules(ctx, m.opts.Bridge, m.opts.Subnet); err != nil {
			return nil, err
		}
		m.rulesOn = true
	}
	m.inflight++
	return func(attached bool) {
		m.rulesMu.Lock()
		m.inflight--
		m.rulesMu.Unlock()
		if !attached {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			m.releaseRulesIfIdle(ctx)
		}
	}, nil
}

// releaseRulesIfIdle removes the network's rules when no Setup is in flight
// and no attachment is left. A failure is logged: the rules are harmless
// and the next idle teardown or start tries again.
func (m *Manager) releaseRulesIfIdle(ctx context.Context) {
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if m.inflight > 0 {
		return
	}
	ids, err := m.List(ctx)
	if err != nil || len(ids) > 0 {
		return
	}
	if err := removeNetworkRules(ctx, m.opts.Bridge, m.opts.Subnet); err != nil {
		m.log.Warn("removing the network's iptables rules after its last instance failed", "err", err)
		return
	}
	if m.rulesOn {
		m.log.Info("last instance detached; removed the network's masquerade and guard rules")
	}
	m.rulesOn = false
}

// syncRulesAtStart installs the rules when attachments survived a restart
// and removes any a previous run left when none did.
func (m *Manager) syncRulesAtStart(ctx context.Context) error {
	ids, err := m.List(ctx)
	if err != nil {
		return err
	}
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	if len(ids) == 0 {
		if err := removeNetworkRules(ctx, m.opts.Bridge, m.opts.Subnet); err != nil {
			m.log.Warn("removing iptables rules left by an earlier run failed", "err", err)
		}
		return nil
	}
	if err := installNetworkRules(ctx, m.opts.Bridge, m.opts.Subnet); err != nil {
		return err
	}
	m.rulesOn = true
	return nil
}

func installNetworkRules(ctx context.Context, bridge, subnet string) error {
	if err := ensureLocalnetGuard(ctx, bridge); err != nil {
		return fmt.Errorf("network: install the 127.0.0.0/8 guard rule for bridge %s: %w", bridge, err)
	}
	if err := ensureMasquerade(ctx, bridge, subnet); err != nil {
		return fmt.Errorf("network: install the masquerade rule for %s: %w", subnet, err)
	}
	return nil
}

// removeNetworkRules deletes every copy of the guard and masquerade rules;
// absent rules are not an error.
func removeNetworkRules(ctx context.Context, bridge, subnet string) error {
	for _, r := range []struct{ table, rule []string }{
		{[]string{"-w", "-t", "nat"}, masqueradeRule(bridge, subnet)},
		{[]string{"-w"}, localnetGuardRule(bridge)},
	} {
		for i := 0; i < 8; i++ { // a crashed run may have added copies
			check := append(append(append([]string{}, r.table...), "-C"), r.rule...)
			if _, err := runIPTables(ctx, "iptables", check...); err != nil {
				break // none left
			}
			del := append(append(append([]string{}, r.table...), "-D"), r.rule...)
			if _, err := runIPTables(ctx, "iptables", del...); err != nil {
				return err
			}
		}
	}
	return nil
}
