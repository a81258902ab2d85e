// Package policy decides whether a tool call may run: allowed, denied or
// held for a human's approval. A Policy is compiled once from a YAML file
// (and a server mode) and evaluated for every call; it does no I/O.
//
// The sources are consulted in order and the first that decides wins:
//
//  1. the server mode: read-only allows only read-only tools,
//     no-destructive refuses destructive ones;
//  2. the principal's tool lists: a tool on its deny list is refused, and
//     when it has an allow list, a tool not on it is refused;
//  3. the rules, in file order: the first whose CEL condition is true
//     decides with its effect (allow, deny or needs-approval);
//  4. otherwise the call is allowed (token scopes are checked before the
//     policy and still apply), except for the tools that are off by
//     default (exec_instance): those are refused with rule "default/…"
//     unless a rule with effect allow matched or the principal's allow
//     list names the tool exactly. A nil Policy refuses them too.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Effect is what a policy decides for a call.
type Effect string

// The effects.
const (
	Allow         Effect = "allow"
	Deny          Effect = "deny"
	NeedsApproval Effect = "needs-approval"
)

func (e Effect) valid() bool { return e == Allow || e == Deny || e == NeedsApproval }

// Mode is a server-wide restriction applied before any rule.
type Mode string

// The modes. ModeNone restricts nothing.
const (
	ModeNone          Mode = ""
	ModeReadOnly      Mode = "read-only"
	ModeNoDestructive Mode = "no-destructive"
)

// ParseMode checks a mode given on the command line.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeNone, ModeReadOnly, ModeNoDestructive:
		return m, nil
	}
	return "", fmt.Errorf("unknown policy mode %q: use read-only or no-destructive (or leave it empty for no restriction)", s)
}

// Input is one tool call as the policy sees it.
type Input struct {
	Principal   string   // "admin", or token-name/token-id
	Scopes      []string // the principal's token scopes
	Tool        string
	ReadOnly    bool // the tool's readOnlyHint
	Destructive bool // the tool's destructiveHint
	// Args are the call's arguments as decoded JSON (numbers are float64).
	Args map[string]any
	// Service is the name of the service the call targets, when there is
	// one, and Labels that service's labels (nil when unknown).
	Service string
	Labels  map[string]string
}

// Decision is the outcome of evaluating a policy.
type Decision struct {
	Effect Effect
	// Rule names what decided: "mode/read-only", "mode/no-destructive",
	// "principal/<name>/allow", "principal/<name>/deny", a rule's name,
	// "default/exec-off" (a tool off by default), or empty for the default.
	Rule string
	// Reason says why, in words fit for the caller.
	Reason string
}

// Policy is a compiled policy. The zero value and nil allow everything.
// It is safe for concurrent use.
type Policy struct {
	mode       Mode
	principals []principalLists
	rules      []compiledRule
	source     string
}

type principalLists struct {
	name        string
	allow, deny []string
}

// Mode returns the server mode in force.
func (p *Policy) Mode() Mode {
	if p == nil {
		return ModeNone
	}
	return p.mode
}

// Source returns where the policy came from (the file path given to Load),
// for messages that tell users who can change it.
func (p *Policy) Source() string {
	if p == nil {
		return ""
	}
	return p.source
}

// RuleCount returns the number of CEL rules.
func (p *Policy) RuleCount() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

// Evaluate decides one call.
func (p *Policy) Evaluate(in Input) Decision {
	if p == nil {
		return defaultDecision(in.Tool, false)
	}
	off := OffByDefault(in.Tool)
	switch {
	case p.mode == ModeReadOnly && (!in.ReadOnly || off):
		return Decision{Effect: Deny, Rule: "mode/read-only",
			Reason: fmt.Sprintf("the server runs in read-only mode: %s changes the cluster, and only read-only tools may be called", in.Tool)}
	case p.mode == ModeNoDestructive && (in.Destructive || off):
		return Decision{Effect: Deny, Rule: "mode/no-destructive",
			Reason: fmt.Sprintf("the server runs in no-destructive mode: %s is destructive (it may replace or remove running instances)", in.Tool)}
	}
	explicit := false // the principal's allow list names the tool
	for i := range p.principals {
		pl := &p.principals[i]
		if !principalMatches(pl.name, in.Principal) {
			continue
		}
		explicit = explicit || slices.Contains(pl.allow, in.Tool)
		if matchAny(pl.deny, in.Tool) {
			return Decision{Effect: Deny, Rule: "principal/" + pl.name + "/deny",
				Reason: fmt.Sprintf("%s is on the deny list of principal %s", in.Tool, pl.name)}
		}
		if pl.allow != nil && !matchAny(pl.allow, in.Tool) {
			return Decision{Effect: Deny, Rule: "principal/" + pl.name + "/allow",
				Reason: fmt.Sprintf("%s is not on the allow list of principal %s (allowed: %s)", in.Tool, pl.name, strings.Join(pl.allow, ", "))}
		}
	}
	if len(p.rules) == 0 {
		return defaultDecision(in.Tool, explicit)
	}
	act := newActivation(in)
	for i := range p.rules {
		r := &p.rules[i]
		matched, err := r.eval(act)
		if err != nil {
			// A rule that cannot be evaluated (say, a number compared
			// with a string) decides nothing in favour of the call:
			// allow rules are skipped, the others fail closed.
			if r.effect == Allow {
				continue
			}
			return Decision{Effect: Deny, Rule: r.name,
				Reason: fmt.Sprintf("rule %s could not be evaluated for this call (%v), so the call is refused", r.name, err)}
		}
		if matched {
			return Decision{Effect: r.effect, Rule: r.name, Reason: r.reason()}
		}
	}
	return defaultDecision(in.Tool, explicit)
}

// offByDefault maps the tools that are refused unless the policy allows
// them explicitly to the rule name of that default refusal.
var offByDefault = map[string]string{"exec_instance": "default/exec-off"}

// OffByDefault reports whether tool is refused unless a policy allows it
// explicitly: a rule with effect allow that matches the call, or an allow
// list of the caller's principal that names the tool (a prefix such as
// "exec_*" or "*" does not count).
func OffByDefault(tool string) bool {
	_, ok := offByDefault[tool]
	return ok
}

// defaultDecision decides a call that no rule decided: allowed, unless
// the tool is off by default and the principal's allow list does not name
// it (explicit). The reason tells the operator how to turn it on.
func defaultDecision(tool string, explicit bool) Decision {
	rule, off := offByDefault[tool]
	if !off || explicit {
		return Decision{Effect: Allow}
	}
	return Decision{Effect: Deny, Rule: rule, Reason: fmt.Sprintf("%s runs commands inside containers, so it is off unless the server's policy allows it. "+
		"To enable it, start gantry dev with --policy FILE, where FILE (YAML) has a rule such as:\n"+
		"rules:\n"+
		"  - name: allow-%s\n"+
		"    when: tool == %q && args.command[0] in [\"cat\", \"ls\", \"ps\"]\n"+
		"    effect: allow    # or needs-approval, to have a human approve each call\n"+
		"or list %s in a principal's allow list (principals: [{name: admin, allow: [%s, ...]}])",
		tool, strings.ReplaceAll(tool, "_", "-"), tool, tool, tool)}
}

// principalMatches reports whether the policy's principal name covers the
// caller: an exact match, "*", or a token name matching "name/id" (not
// for OAuth principals, "oauth:sub@issuer", whose issuer holds slashes).
func principalMatches(rule, who string) bool {
	if rule == "*" || rule == who {
		return true
	}
	if strings.HasPrefix(who, "oauth:") {
		return false
	}
	name, _, ok := strings.Cut(who, "/")
	return ok && name == rule
}

// matchAny reports whether tool is one of the names, where a name ending
// in '*' matches every tool starting with the part before it.
func matchAny(names []string, tool string) bool {
	for _, n := range names {
		if n == tool {
			return true
		}
		if prefix, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(tool, prefix) {
			return true
		}
	}
	return false
}

// errNoSuchKey tells a missing argument or label, which simply makes a rule
// not match, from real evaluation errors.
var errNoSuchKey = errors.New("no such key")
