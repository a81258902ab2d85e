package cluster

// Secrets for instances on workers: a worker asks a server for the values
// its instances' specs reference (POST /v1/secrets on the node RPC port,
// mutual TLS). A worker gets a secret only when a service that references
// it has an instance placed on that worker's node.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/state"
)

// secretsPath is the server endpoint workers open secrets through.
const secretsPath = "/v1/secrets"

type secretsRequest struct {
	Names []string `json:"names"`
}

type secretsResponse struct {
	Values map[string]string `json:"values"`
}

// withSecrets serves secretsPath and renewPath beside the node RPC handler.
func (s *serverNode) withSecrets(rpcHandler http.Handler, secrets *Secrets) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", rpcHandler)
	mux.HandleFunc("POST "+renewPath, s.renewHandler)
	mux.HandleFunc("POST "+secretsPath, func(w http.ResponseWriter, r *http.Request) {
		role, node, err := pki.PeerRole(r.TLS)
		if err != nil {
			http.Error(w, "a node certificate is required", http.StatusUnauthorized)
			return
		}
		var req secretsRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || len(req.Names) == 0 {
			http.Error(w, "want {\"names\": [...]}", http.StatusBadRequest)
			return
		}
		if role == pki.RoleWorker {
			if name, ok := s.secretsAllowed(node, req.Names); !ok {
				s.log.Warn("refused a worker a secret its instances do not use", "node", node, "secret", name)
				http.Error(w, fmt.Sprintf("no instance on node %s references secret %q", node, name), http.StatusForbidden)
				return
			}
		}
		out := secretsResponse{Values: map[string]string{}}
		for _, n := range req.Names {
			v, err := secrets.value(n)
			if errdefs.IsNotFound(err) {
				http.Error(w, fmt.Sprintf("secret %q does not exist", n), http.StatusNotFound)
				return
			}
			if err != nil {
				http.Error(w, fmt.Sprintf("secret %q: %v", n, err), http.StatusInternalServerError)
				return
			}
			out.Values[n] = v
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(out)
	})
	return mux
}

// secretsAllowed reports whether every name is referenced by a service
// with an instance on node; when not, it returns the first that is not.
func (s *serverNode) secretsAllowed(node string, names []string) (string, bool) {
	insts, _ := s.st.Instances(state.InstanceFilter{Node: node})
	var used []string
	seen := map[string]bool{}
	for _, in := range insts {
		if seen[in.Service] {
			continue
		}
		seen[in.Service] = true
		if svc, err := s.st.Service(in.Service); err == nil {
			for _, n := range svc.Spec.Secrets {
				used = append(used, n)
			}
		}
	}
	for _, n := range names {
		if !slices.Contains(used, n) {
			return n, false
		}
	}
	return "", true
}

// remoteSecrets is a worker's SecretResolver: it asks the servers, and
// keeps the last values in memory so an instance restarted while no server
// answers still starts (static stability; nothing is written to disk).
type remoteSecrets struct {
	servers func() []string
	hc      *http.Client
	log     *slog.Logger

	mu   sync.Mutex
	last map[string]string
}

func newRemoteSecrets(servers func() []string, tlsConf *tls.Config, log *slog.Logger) *remoteSecrets {
	return &remoteSecrets{servers: servers, log: log, last: map[string]string{},
		hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf,
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}}
}

// ResolveSecrets implements worker.SecretResolver.
func (r *remoteSecrets) ResolveSecrets(ctx context.Context, refs map[string]string) (map[string]string, error) {
	var names []string
	for _, n := range refs {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	vals, err := r.fetch(ctx, names)
	if err != nil {
		r.mu.Lock()
		cached := true
		for _, n := range names {
			if _, ok := r.last[n]; !ok {
				cached = false
			}
		}
		if cached && errdefs.IsUnavailable(err) {
			vals = maps2(r.last, names)
			err = nil
			r.log.Warn("no server answered; using the secret values last fetched", "secrets", names)
		}
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
	} else {
		r.mu.Lock()
		for n, v := range vals {
			r.last[n] = v
		}
		r.mu.Unlock()
	}
	out := make(map[string]string, len(refs))
	for env, n := range refs {
		out[env] = vals[n]
	}
	return out, nil
}

func maps2(m map[string]string, names []string) map[string]string {
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = m[n]
	}
	return out
}

func (r *remoteSecrets) fetch(ctx context.Context, names []string) (map[string]string, error) {
	body, err := json.Marshal(secretsRequest{Names: names})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range r.servers() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+secretsPath, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		resp, err := r.hc.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			var out secretsResponse
			if err := json.Unmarshal(data, &out); err != nil {
				return nil, fmt.Errorf("secrets from %s: %w", addr, err)
			}
			return out.Values, nil
		case http.StatusNotFound:
			return nil, fmt.Errorf("%s: %w", bytes.TrimSpace(data), errdefs.ErrNotFound)
		case http.StatusForbidden:
			// This server may not have seen the placement yet; ask the next.
			errs = append(errs, fmt.Errorf("%s: %s: %w", addr, bytes.TrimSpace(data), errdefs.ErrPermission))
		default:
			errs = append(errs, fmt.Errorf("%s: %s %s", addr, resp.Status, bytes.TrimSpace(data)))
		}
	}
	err = errors.Join(errs...)
	if errors.Is(err, errdefs.ErrPermission) {
		return nil, err
	}
	return nil, fmt.Errorf("open secrets %v: no server answered: %w: %w", names, err, errdefs.ErrUnavailable)
}
