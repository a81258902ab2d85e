package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/image/imagetest"
)

// nodeTools installs (once; offline afterwards) the pinned Node 22 and
// TypeScript MCP SDK of tests/node and returns their directory, or skips
// the test when that is impossible here (no npm, no registry).
func nodeTools(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		if _, err := os.Stat("../.cache/node/node_modules/.bin/node"); err != nil {
			t.Skip("needs npm to install Node 22 and the TypeScript MCP SDK (apt-get install npm)")
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/node-tools.sh")
	cmd.Dir = ".."
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot install the Node tools of tests/node (is the npm registry reachable?): %v\n%s", err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	if !filepath.IsAbs(dir) {
		t.Fatalf("scripts/node-tools.sh printed %q, want an absolute directory", dir)
	}
	return dir
}

// tsSummary is the JSON line tests/ts/e2e.mjs prints.
type tsSummary struct {
	SDK   string `json:"sdk"`
	Node  string `json:"node"`
	Error string `json:"error"`
	HTTP  *struct {
		OK      bool   `json:"ok"`
		Service string `json:"service"`
		MS      int    `json:"ms"`
	} `json:"http"`
	Stdio *struct {
		OK      bool   `json:"ok"`
		Service string `json:"service"`
		MS      int    `json:"ms"`
	} `json:"stdio"`
}

// The official TypeScript MCP SDK client deploys, watches, reads logs of
// and removes a service, over streamable HTTP with the bearer token and
// over stdio through `gantry mcp`, asserting on structured content.
func TestTypeScriptSDKClient(t *testing.T) {
	if skipAll != "" {
		t.Skip(skipAll)
	}
	tools := nodeTools(t)
	reg := imagetest.Registry(t)
	ref := reg + "/e2e/ts-sdk:1"
	imagetest.PushImage(t, imagetest.Busybox(t, nil), ref)
	d := startDev(t)

	script, err := filepath.Abs("../tests/ts/e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "node_modules", ".bin", "node"), script)
	cmd.Env = append(os.Environ(),
		"GANTRY_ADDR=http://"+d.addr+"/mcp",
		"GANTRY_TOKEN="+d.token,
		"GANTRY_BIN="+gantryBin,
		"GANTRY_E2E_IMAGE="+ref,
		"GANTRY_NODE_TOOLS="+tools,
	)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, runErr := cmd.Output()
	t.Logf("tests/ts/e2e.mjs took %v", time.Since(start).Round(time.Millisecond))

	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var sum tsSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("e2e.mjs: %v; no JSON summary (%v)\nstdout:\n%s\nstderr:\n%s\n--- gantry log:\n%s", runErr, err, out, stderr.String(), d.log())
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		t.Fatalf("run e2e.mjs: %v", runErr)
	}
	if runErr != nil || sum.Error != "" {
		t.Fatalf("TypeScript SDK client failed: %s\nstderr:\n%s\n--- gantry log:\n%s", sum.Error, stderr.String(), d.log())
	}
	if !strings.HasPrefix(sum.Node, "22.") || sum.SDK == "" {
		t.Errorf("ran on node %q with SDK %q, want Node 22 and the pinned SDK", sum.Node, sum.SDK)
	}
	if sum.HTTP == nil || !sum.HTTP.OK || sum.Stdio == nil || !sum.Stdio.OK {
		t.Fatalf("want both transports ok, got %s", lines[len(lines)-1])
	}
	if sum.HTTP.Service == sum.Stdio.Service {
		t.Errorf("both transports used service %q; each should deploy its own", sum.HTTP.Service)
	}
	t.Logf("TypeScript SDK %s on node %s: http %d ms, stdio %d ms", sum.SDK, sum.Node, sum.HTTP.MS, sum.Stdio.MS)
	deadline := time.Now().Add(15 * time.Second)
	for len(d.runcContainers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ids := d.runcContainers(); len(ids) != 0 {
		t.Errorf("containers left after both services were removed: %v", ids)
	}
}
