package mcp_test

import (
	"context"
	"encoding/json"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/mcp/mcptest"
)

// FuzzDeployInput feeds random bytes to deploy, both as spec_yaml and as the
// raw arguments object: the server must answer every call (a result or a
// protocol error for malformed arguments) and never panic.
func FuzzDeployInput(f *testing.F) {
	for _, seed := range []string{
		webYAML,
		"name: web\nimage: busybox\nreplicas: -1\n",
		`{"name":"web","image":"busybox","replicas":1}`,
		`{"spec":{"name":"web","image":"busybox","replicas":1}}`,
		`{"spec_yaml":"name: [", "spec":{}}`,
		"a: &a [*a, *a]\n",
		"\x00\xff---\n- ",
	} {
		f.Add([]byte(seed))
	}
	c := mcptest.New()
	srv, err := mcp.NewServer(mcp.Config{Services: c, Images: c, Token: testToken})
	if err != nil {
		f.Fatal(err)
	}
	ct, st := sdk.NewInMemoryTransports()
	ss, err := srv.MCPServer().Connect(context.Background(), st, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "fuzz", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer cs.Close()

	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolDeploy, Arguments: api.DeployInput{SpecYAML: string(data)}})
		if err != nil {
			t.Fatalf("spec_yaml call: %v", err)
		}
		if res.IsError && len(res.Content) == 0 {
			t.Fatal("tool error without text")
		}
		if json.Valid(data) {
			// Malformed arguments may be a protocol error; the point is that
			// the session survives.
			_, _ = cs.CallTool(context.Background(), &sdk.CallToolParams{Name: api.ToolDeploy, Arguments: json.RawMessage(data)})
		}
		if err := cs.Ping(context.Background(), nil); err != nil {
			t.Fatalf("session died: %v", err)
		}
	})
}
