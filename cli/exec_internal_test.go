package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
	"github.com/gantry-dev/gantry/policy"
)

// scriptedExec answers exec_instance by the program name: "fail" exits 3,
// "slow" times out, anything else echoes its arguments.
type scriptedExec struct{ last mcp.ExecRequest }

func (s *scriptedExec) Exec(_ context.Context, req mcp.ExecRequest) (*api.ExecResult, error) {
	s.last = req
	res := &api.ExecResult{Instance: req.Instance, Service: "web", Node: "n1", Command: req.Command, DryRun: req.DryRun}
	switch {
	case req.DryRun:
	case req.Command[0] == "fail":
		res.ExitCode, res.Stderr = 3, "it failed\n"
	case req.Command[0] == "slow":
		res.ExitCode, res.TimedOut, res.Stdout = 137, true, "partial\n"
	default:
		res.Stdout = strings.Join(req.Command[1:], " ") + "\n"
	}
	return res, nil
}

func (s *scriptedExec) ServiceOf(context.Context, string) (string, bool) { return "web", true }

func execServer(t *testing.T, pol *policy.Policy) (*scriptedExec, string) {
	t.Helper()
	c := mcptest.New()
	ex := &scriptedExec{}
	srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Token: "exec-token-0123456789", Policy: pol, Exec: ex, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", srv.Handler())
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	t.Cleanup(srv.CloseSessions)
	return ex, ts.URL + "/mcp"
}

func runGantry(t *testing.T, addr string, args ...string) (int, string, string) {
	t.Helper()
	t.Setenv("GANTRY_TOKEN", "exec-token-0123456789")
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"--addr", addr}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestExecCommand(t *testing.T) {
	pol, err := policy.Load([]byte("rules:\n  - name: allow-exec\n    when: tool == \"exec_instance\"\n    effect: allow\n"), policy.ModeNone, "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ex, addr := execServer(t, pol)

	code, out, _ := runGantry(t, addr, "exec", "--timeout", "3s", "web-0-abc", "--", "echo", "; rm -rf /", "-n")
	if code != 0 || out != "; rm -rf / -n\n" {
		t.Errorf("exec echo = %d, %q", code, out)
	}
	if ex.last.Timeout.String() != "3s" || len(ex.last.Command) != 3 || ex.last.Command[1] != "; rm -rf /" {
		t.Errorf("request = %+v: want the words after -- as they are, timeout 3s", ex.last)
	}
	code, out, errOut := runGantry(t, addr, "exec", "web-0-abc", "--", "fail")
	if code != 3 || out != "" || errOut != "it failed\n" {
		t.Errorf("failing command = %d, %q, %q; want 3, nothing, its stderr", code, out, errOut)
	}
	code, out, errOut = runGantry(t, addr, "exec", "--timeout", "1s", "web-0-abc", "--", "slow")
	if code != exitTimedOut || out != "partial\n" || !strings.Contains(errOut, "timed out after 1s") {
		t.Errorf("timed-out command = %d, %q, %q; want 124 and a message", code, out, errOut)
	}
	code, out, _ = runGantry(t, addr, "exec", "--dry-run", "web-0-abc", "--", "ls")
	if code != 0 || !strings.Contains(out, "dry run") || !strings.Contains(out, "policy: allow by allow-exec") || !ex.last.DryRun {
		t.Errorf("dry run = %d, %q", code, out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "web-0-abc", "cat", "/x"}, "put -- between"},
		{[]string{"exec", "web-0-abc"}, "missing command"},
		{[]string{"exec", "web-0-abc", "--"}, "missing command after --"},
		{[]string{"exec", "--", "ls"}, "INSTANCE"},
		{[]string{"exec", "--timeout", "2m", "web-0-abc", "--", "ls"}, "--timeout"},
	} {
		code, _, errOut := runGantry(t, addr, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("gantry %q = %d, %q; want usage error mentioning %q", c.args, code, errOut, c.want)
		}
	}
}

func TestExecRefusedByDefault(t *testing.T) {
	_, addr := execServer(t, nil)
	code, out, errOut := runGantry(t, addr, "exec", "web-0-abc", "--", "cat", "/etc/hostname")
	if code != exitFailure || out != "" || !strings.Contains(errOut, "default/exec-off") || !strings.Contains(errOut, "--policy") {
		t.Errorf("default refusal = %d, %q, %q; want 1 with the policy hint", code, out, errOut)
	}
}
