package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/google/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// File is a policy file:
//
//	mode: no-destructive          # optional; --mode overrides it
//	principals:
//	  - name: ci                  # a token name, "admin", or "*"
//	    allow: [list_*, get_service, deploy]
//	    deny: [remove_service]
//	rules:
//	  - name: no-huge-scale
//	    when: tool == "scale_service" && args.replicas > 10
//	    effect: deny
//	    message: ask the platform team for more than 10 replicas
//	  - name: prod-needs-approval
//	    when: labels.tier == "prod" && !read_only
//	    effect: needs-approval
//
// A rule's condition is a CEL expression over these variables:
// principal (string), scopes (list of strings), tool (string), read_only
// and destructive (bools: the tool's annotations), args (the call's
// arguments; numbers are doubles), service (the target service's name, or
// "") and labels (its labels, a map of strings). A rule whose condition
// reads a missing argument or label does not match.
//
// exec_instance is off by default: it is refused (rule default/exec-off)
// unless a rule with effect allow matches the call, e.g.
//
//	rules:
//	  - name: allow-exec
//	    when: tool == "exec_instance" && args.command[0] in ["cat", "ls", "ps"]
//	    effect: allow
//
// or a principal's allow list names it exactly; a needs-approval rule
// holds it for a human's approval as usual.
type File struct {
	Mode       string            `yaml:"mode,omitempty"`
	Principals []PrincipalPolicy `yaml:"principals,omitempty"`
	Rules      []Rule            `yaml:"rules,omitempty"`
}

// PrincipalPolicy is one principal's tool lists. Tool names may end in '*'.
type PrincipalPolicy struct {
	Name  string   `yaml:"name"`
	Allow []string `yaml:"allow,omitempty"`
	Deny  []string `yaml:"deny,omitempty"`
}

// Rule is a CEL condition with the effect it has when true.
type Rule struct {
	Name    string `yaml:"name"`
	When    string `yaml:"when"`
	Effect  string `yaml:"effect"`
	Message string `yaml:"message,omitempty"`
}

// Limits on policy files, so a file cannot make the server slow.
const (
	MaxFileSize  = 1 << 20
	maxRules     = 1000
	maxWhenLen   = 4096
	maxListNames = 1000
	// maxCost bounds one rule's evaluation (CEL's cost units).
	maxCost = 100_000
)

var (
	ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	toolPat  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}\*?$|^\*$`)
	whoName  = regexp.MustCompile(`^(\*|[A-Za-z0-9][A-Za-z0-9._/:@-]{0,255})$`)
)

// Parse decodes and checks a policy file; unknown fields are errors. The
// error lists every problem, each naming the rule or principal and field.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy file is %d bytes, more than the limit of %d", len(data), MaxFileSize)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policy file is not valid YAML for a policy (fields: mode, principals, rules): %w", err)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *File) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, err := ParseMode(f.Mode); err != nil {
		bad("mode: %v", err)
	}
	if len(f.Rules) > maxRules {
		bad("rules: %d rules, more than the limit of %d", len(f.Rules), maxRules)
	}
	seen := map[string]bool{}
	for i, p := range f.Principals {
		where := fmt.Sprintf("principals[%d]", i)
		if !whoName.MatchString(p.Name) {
			bad("%s.name: %q is not a principal: use \"admin\", a token name such as \"ci\", name/id, or \"*\"", where, p.Name)
		} else {
			where = fmt.Sprintf("principal %s", p.Name)
		}
		if len(p.Allow)+len(p.Deny) > maxListNames {
			bad("%s: more than %d tool names", where, maxListNames)
		}
		for field, list := range map[string][]string{"allow": p.Allow, "deny": p.Deny} {
			for j, t := range list {
				if !toolPat.MatchString(t) {
					bad("%s.%s[%d]: %q is not a tool name: use a name such as deploy, or a prefix with '*' such as list_*", where, field, j, t)
				}
			}
		}
	}
	for i, r := range f.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		switch {
		case !ruleName.MatchString(r.Name):
			bad("%s.name: %q is not a rule name: use 1 to 64 letters, digits, '.', '_' or '-'", where, r.Name)
		case seen[r.Name]:
			bad("rule %s (rules[%d]).name: the name is used by an earlier rule; names must be unique", r.Name, i)
		default:
			seen[r.Name] = true
			where = fmt.Sprintf("rule %s", r.Name)
		}
		if !Effect(r.Effect).valid() {
			bad("%s.effect: %q is not an effect: use allow, deny or needs-approval", where, r.Effect)
		}
		switch {
		case strings.TrimSpace(r.When) == "":
			bad("%s.when: empty: write a CEL condition such as tool == \"remove_service\"", where)
		case len(r.When) > maxWhenLen:
			bad("%s.when: %d characters, more than the limit of %d", where, len(r.When), maxWhenLen)
		}
		if len(r.Message) > 512 {
			bad("%s.message: more than 512 characters", where)
		}
	}
	return errors.Join(errs...)
}

// compiledRule is a rule with its CEL program.
type compiledRule struct {
	name    string
	effect  Effect
	message string
	prg     cel.Program
}

func (r *compiledRule) reason() string {
	if r.message != "" {
		return r.message
	}
	switch r.effect {
	case Deny:
		return "refused by policy rule " + r.name
	case NeedsApproval:
		return "policy rule " + r.name + " requires a human's approval"
	}
	return "allowed by policy rule " + r.name
}

// env is the CEL environment every rule is compiled in.
func env() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("principal", cel.StringType),
		cel.Variable("scopes", cel.ListType(cel.StringType)),
		cel.Variable("tool", cel.StringType),
		cel.Variable("read_only", cel.BoolType),
		cel.Variable("destructive", cel.BoolType),
		cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("service", cel.StringType),
		cel.Variable("labels", cel.MapType(cel.StringType, cel.StringType)),
		cel.CrossTypeNumericComparisons(true),
	)
}

// Compile checks f and compiles its rules. mode, when not ModeNone,
// overrides the file's mode; source names the file in messages.
func Compile(f *File, mode Mode, source string) (*Policy, error) {
	if f == nil {
		f = &File{}
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	p := &Policy{mode: Mode(f.Mode), source: source}
	if mode != ModeNone {
		if _, err := ParseMode(string(mode)); err != nil {
			return nil, err
		}
		p.mode = mode
	}
	for _, pp := range f.Principals {
		pl := principalLists{name: pp.Name, deny: pp.Deny}
		if pp.Allow != nil {
			pl.allow = append([]string{}, pp.Allow...)
		}
		p.principals = append(p.principals, pl)
	}
	if len(f.Rules) == 0 {
		return p, nil
	}
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	var errs []error
	for _, r := range f.Rules {
		ast, iss := e.Compile(r.When)
		if iss.Err() != nil {
			errs = append(errs, fmt.Errorf("rule %s.when: CEL: %s", r.Name, oneLine(iss.Err().Error())))
			continue
		}
		if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
			errs = append(errs, fmt.Errorf("rule %s.when: the condition is a %s, but it must be true or false (a bool)", r.Name, ast.OutputType()))
			continue
		}
		prg, err := e.Program(ast, cel.CostLimit(maxCost), cel.EvalOptions(cel.OptOptimize))
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s.when: CEL: %s", r.Name, oneLine(err.Error())))
			continue
		}
		p.rules = append(p.rules, compiledRule{name: r.Name, effect: Effect(r.Effect), message: r.Message, prg: prg})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// Load parses and compiles a policy file's content.
func Load(data []byte, mode Mode, source string) (*Policy, error) {
	f, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return Compile(f, mode, source)
}

// ForMode returns a policy with only a server mode.
func ForMode(mode Mode) (*Policy, error) { return Compile(nil, mode, "") }

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}

func newActivation(in Input) map[string]any {
	args := in.Args
	if args == nil {
		args = map[string]any{}
	}
	labels := in.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	scopes := in.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return map[string]any{
		"principal": in.Principal, "scopes": scopes, "tool": in.Tool,
		"read_only": in.ReadOnly, "destructive": in.Destructive,
		"args": args, "service": in.Service, "labels": labels,
	}
}

// eval runs the rule: a missing key makes it not match.
func (r *compiledRule) eval(act map[string]any) (bool, error) {
	v, _, err := r.prg.Eval(act)
	if err != nil {
		if strings.Contains(err.Error(), errNoSuchKey.Error()) {
			return false, nil
		}
		return false, err
	}
	b, ok := v.Value().(bool)
	if !ok {
		return false, fmt.Errorf("the condition gave %v, not true or false", v.Value())
	}
	return b, nil
}
