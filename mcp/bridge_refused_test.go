package mcp_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/mcp"
)

// With nothing listening at the endpoint, the bridge's error reply says to
// start gantry dev or point GANTRY_ADDR at it, not only "connection refused".
func TestBridgeSaysWhenNoServerListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + ln.Addr().String() + "/mcp"
	ln.Close()
	clientToBridgeR, clientToBridgeW := io.Pipe()
	bridgeToClientR, bridgeToClientW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- mcp.Bridge(context.Background(), endpoint, "tok", clientToBridgeR, bridgeToClientW)
		bridgeToClientW.Close()
	}()
	go func() {
		_, _ = io.WriteString(clientToBridgeW, `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}`+"\n")
	}()
	buf := make([]byte, 4096)
	n, err := bridgeToClientR.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if reply := string(buf[:n]); !strings.Contains(reply, `"id":3`) || !strings.Contains(reply, "gantry dev") || !strings.Contains(reply, "GANTRY_ADDR") {
		t.Errorf("reply = %s", reply)
	}
	clientToBridgeW.Close()
	go func() { _, _ = io.Copy(io.Discard, bridgeToClientR) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("Bridge did not return after stdin closed")
	}
}
