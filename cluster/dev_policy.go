package cluster

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/policy"
)

// DevPolicy is the oversight configuration of gantry dev: a policy file, a
// server mode and whether destructive calls are confirmed by elicitation.
type DevPolicy struct {
	File               string
	Mode               policy.Mode
	ConfirmDestructive bool
	parsed             *policy.File
}

// registerPolicyFlags adds --policy, --mode and --confirm-destructive. The
// policy file is read and fully checked (CEL included) while flags are
// parsed, so a bad file stops gantry dev before anything starts.
func registerPolicyFlags(fs *flag.FlagSet, o *DevOptions) {
	o.Policy.ConfirmDestructive = true
	fs.Func("policy", "YAML policy file: per-principal tool allow/deny lists and CEL rules deciding allow, deny or needs-approval (see docs/mcp.md)", func(v string) error {
		f, err := readPolicyFile(v)
		if err != nil {
			return err
		}
		o.Policy.File, o.Policy.parsed = v, f
		return nil
	})
	fs.Func("mode", "server mode: read-only (only read-only tools) or no-destructive (no destructive tools); overrides the policy file's mode", func(v string) error {
		m, err := policy.ParseMode(v)
		if err != nil {
			return err
		}
		o.Policy.Mode = m
		return nil
	})
	fs.BoolFunc("confirm-destructive", "ask the user to confirm removals and scale-downs through MCP elicitation, on sessions whose client supports it (default true)", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		o.Policy.ConfirmDestructive = b
		return nil
	})
}

func readPolicyFile(path string) (*policy.File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, policy.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	f, err := policy.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	if _, err := policy.Compile(f, policy.ModeNone, path); err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	return f, nil
}

// compile returns the policy in force: nil when there is neither a file
// nor a mode.
func (p DevPolicy) compile() (*policy.Policy, error) {
	if p.parsed == nil && p.Mode == policy.ModeNone {
		return nil, nil
	}
	pol, err := policy.Compile(p.parsed, p.Mode, p.File)
	if err != nil {
		return nil, fmt.Errorf("policy: %w: %w", err, errdefs.ErrInvalid)
	}
	return pol, nil
}
