package cluster

// exec_instance in a cluster: a server checks the instance as gantry dev
// does (InstanceExec) and has the worker that runs it execute the command
// (POST /v1/exec/<instance> on the worker's --rpc-addr, mutual TLS, server
// certificates only).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/runtime"
)

// workerExecPath is the worker endpoint: POST /v1/exec/<instance>.
const workerExecPath = "/v1/exec/"

type execRequest struct {
	Argv      []string      `json:"argv"`
	Timeout   time.Duration `json:"timeout,omitempty"`
	MaxOutput int           `json:"max_output,omitempty"`
}

// workerExecHandler runs commands in this worker's instances for servers.
func workerExecHandler(run func(ctx context.Context, id string, argv []string, o runtime.ExecOptions) (runtime.ExecResult, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if role, _, err := pki.PeerRole(r.TLS); err != nil || role != pki.RoleServer {
			http.Error(w, "only servers may run commands here", http.StatusForbidden)
			return
		}
		id := strings.TrimPrefix(r.URL.Path, workerExecPath)
		var req execRequest
		if r.Method != http.MethodPost || !instanceIDPattern.MatchString(id) ||
			json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req) != nil || len(req.Argv) == 0 {
			http.Error(w, "want POST "+workerExecPath+"<instance id> with {\"argv\": [...]}", http.StatusBadRequest)
			return
		}
		res, err := run(r.Context(), id, req.Argv, runtime.ExecOptions{Timeout: req.Timeout, MaxOutput: req.MaxOutput})
		switch {
		case errdefs.IsConflict(err):
			http.Error(w, err.Error(), http.StatusConflict)
			return
		case errdefs.IsNotFound(err):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})
}

// clusterExec is a server's mcp.Executor: InstanceExec's checks, with the
// command run by the instance's worker.
type clusterExec struct {
	s     *serverNode
	hc    *http.Client
	scrub func(service string) *Scrubber
}

var _ mcp.Executor = (*clusterExec)(nil)

func newClusterExec(s *serverNode, tlsConf *tls.Config, scrub func(string) *Scrubber) *clusterExec {
	return &clusterExec{s: s, scrub: scrub, hc: &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}}
}

// Exec implements mcp.Executor.
func (c *clusterExec) Exec(ctx context.Context, req mcp.ExecRequest) (*api.ExecResult, error) {
	in, err := c.s.st.Instance(req.Instance)
	if err != nil {
		return nil, err
	}
	e := &InstanceExec{Store: c.s.st, Node: in.Node, Worker: remoteWorker{c: c, node: in.Node}, Scrub: c.scrub}
	return e.Exec(ctx, req)
}

// ServiceOf implements mcp.Executor.
func (c *clusterExec) ServiceOf(ctx context.Context, instance string) (string, bool) {
	return (&InstanceExec{Store: c.s.st}).ServiceOf(ctx, instance)
}

// remoteWorker runs a command through the worker of node.
type remoteWorker struct {
	c    *clusterExec
	node string
}

func (w remoteWorker) Exec(ctx context.Context, id string, argv []string, o runtime.ExecOptions) (runtime.ExecResult, error) {
	addr := ""
	for _, m := range w.c.s.ml.Members() {
		if m.Name == w.node && m.State == membership.StateAlive && m.Meta.Role == membership.RoleWorker {
			addr = m.Meta.RPCAddr
		}
	}
	if addr == "" {
		return runtime.ExecResult{}, errdefs.WithHint(fmt.Errorf("node %s, which runs instance %s, is not reachable: %w", w.node, id, errdefs.ErrUnavailable),
			"see the node's status with list_nodes")
	}
	body, err := json.Marshal(execRequest{Argv: argv, Timeout: o.Timeout, MaxOutput: o.MaxOutput})
	if err != nil {
		return runtime.ExecResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+workerExecPath+id, bytes.NewReader(body))
	if err != nil {
		return runtime.ExecResult{}, err
	}
	resp, err := w.c.hc.Do(req)
	if err != nil {
		return runtime.ExecResult{}, fmt.Errorf("exec on node %s: %w: %w", w.node, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	msg := strings.TrimSpace(string(data))
	switch resp.StatusCode {
	case http.StatusOK:
		var res runtime.ExecResult
		if err := json.Unmarshal(data, &res); err != nil {
			return runtime.ExecResult{}, fmt.Errorf("exec on node %s: %w", w.node, err)
		}
		return res, nil
	case http.StatusConflict:
		return runtime.ExecResult{}, fmt.Errorf("%s: %w", msg, errdefs.ErrConflict)
	case http.StatusNotFound:
		return runtime.ExecResult{}, fmt.Errorf("%s: %w", msg, errdefs.ErrNotFound)
	}
	return runtime.ExecResult{}, fmt.Errorf("exec on node %s: %s: %s", w.node, resp.Status, msg)
}
