package mcp_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/mcp"
)

// bridged starts Bridge between an in-process stdio pipe pair and the
// endpoint, and returns a client session over the pipes and a func that
// closes the client side and returns Bridge's error.
func bridged(t *testing.T, endpoint, token string, opts *sdk.ClientOptions, version string) (*sdk.ClientSession, func() error) {
	t.Helper()
	clientToBridgeR, clientToBridgeW := io.Pipe()
	bridgeToClientR, bridgeToClientW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := mcp.Bridge(context.Background(), endpoint, token, clientToBridgeR, bridgeToClientW)
		bridgeToClientW.Close()
		done <- err
	}()
	client := sdk.NewClient(&sdk.Implementation{Name: "desktop", Version: "1"}, opts)
	cs, err := client.Connect(context.Background(), &sdk.IOTransport{Reader: bridgeToClientR, Writer: clientToBridgeW}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect through bridge: %v", err)
	}
	return cs, func() error {
		cs.Close()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Bridge did not return after stdin closed")
			return nil
		}
	}
}

func TestBridge(t *testing.T) {
	for _, version := range []string{"", "2025-06-18"} {
		t.Run("protocol "+version, func(t *testing.T) { testBridge(t, version) })
	}
}

func testBridge(t *testing.T, version string) {
	e := newEnv(t)
	var progress atomic.Int32
	opts := &sdk.ClientOptions{ProgressNotificationHandler: func(context.Context, *sdk.ProgressNotificationClientRequest) { progress.Add(1) }}
	cs, stop := bridged(t, e.http.URL+"/mcp", testToken, opts, version)
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 11 {
		t.Errorf("listed %d tools through the bridge", len(tools.Tools))
	}
	res := call(t, cs, api.ToolDeploy, api.DeployInput{SpecYAML: webYAML})
	if got := decode[api.DeployResult](t, res); !got.Created {
		t.Errorf("deploy through bridge = %+v", got)
	}
	wantToolError(t, call(t, cs, api.ToolGetService, api.NameInput{Name: "nope"}), "not found")
	// Progress notifications make it through the bridge too.
	params := &sdk.CallToolParams{Name: api.ToolPullImage, Arguments: api.PullImageInput{Ref: "127.0.0.1:5000/demo/web:1"}}
	params.SetProgressToken(42)
	res, err = cs.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("pull through bridge: %v %v", err, res)
	}
	waitFor(t, func() bool { return progress.Load() >= 3 })
	if err := stop(); err != nil {
		t.Errorf("Bridge = %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestBridgeReportsBadToken(t *testing.T) {
	e := newEnv(t)
	clientToBridgeR, clientToBridgeW := io.Pipe()
	bridgeToClientR, bridgeToClientW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- mcp.Bridge(context.Background(), e.http.URL+"/mcp", "wrong", clientToBridgeR, bridgeToClientW)
		bridgeToClientW.Close()
	}()
	go func() {
		_, _ = io.WriteString(clientToBridgeW, `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`+"\n")
	}()
	buf := make([]byte, 4096)
	n, err := bridgeToClientR.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	reply := string(buf[:n])
	if !strings.Contains(reply, `"id":7`) || !strings.Contains(reply, "rejected the token") || !strings.Contains(reply, "GANTRY_TOKEN") {
		t.Errorf("reply = %s", reply)
	}
	clientToBridgeW.Close()
	select {
	case err := <-done:
		// A rejected token is fatal: no retry will fix it.
		if err == nil || !strings.Contains(err.Error(), "rejected the token") {
			t.Errorf("Bridge = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Bridge did not return")
	}
	bridgeToClientR.Close()
}
