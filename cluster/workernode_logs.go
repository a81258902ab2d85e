package cluster

// A worker serves the logs of its instances to the servers (HTTPS, mutual
// TLS, server certificates only), so service_logs on any server shows the
// logs of instances that run on workers. The server fetches the end of a
// log into a local cache file that the Backend reads like a local log.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
)

// workerLogsPath is the worker endpoint: GET /v1/logs/<instance>.
const workerLogsPath = "/v1/logs/"

// maxLogFetch bounds how much of the end of an instance's log a server
// fetches (the Backend greps at most 4 MiB of a log).
const maxLogFetch = 4 << 20

var instanceIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,127}$`)

// workerLogsHandler serves the end of an instance's log file to servers.
func workerLogsHandler(logPath func(id string) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if role, _, err := pki.PeerRole(r.TLS); err != nil || role != pki.RoleServer {
			http.Error(w, "only servers may read logs here", http.StatusForbidden)
			return
		}
		id := r.URL.Path[len(workerLogsPath):]
		if r.Method != http.MethodGet || !instanceIDPattern.MatchString(id) {
			http.Error(w, "want GET "+workerLogsPath+"<instance id>", http.StatusBadRequest)
			return
		}
		f, err := os.Open(logPath(id))
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(w, "no log for instance "+id+" on this node", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if off := st.Size() - maxLogFetch; off > 0 {
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Last-Modified", st.ModTime().UTC().Format(http.TimeFormat))
		w.Header().Set("Gantry-Log-Mtime", strconv.FormatInt(st.ModTime().UnixNano(), 10))
		_, _ = io.Copy(w, io.LimitReader(f, maxLogFetch))
	})
}

// remoteLogs gives the Backend a local path for any instance's log: for an
// instance on a worker it fetches the log's end into cacheDir first (a
// fetch that fails leaves the last copy, if any).
type remoteLogs struct {
	s        *serverNode
	cacheDir string
	hc       *http.Client
}

func newRemoteLogs(s *serverNode, cacheDir string, tlsConf *tls.Config) *remoteLogs {
	_ = os.RemoveAll(cacheDir) // copies of a previous run may be of deleted instances
	return &remoteLogs{s: s, cacheDir: cacheDir, hc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsConf, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}}
}

func (l *remoteLogs) path(id string) string {
	path := filepath.Join(l.cacheDir, filepath.Base(id), "container.log")
	if !instanceIDPattern.MatchString(id) {
		return path
	}
	inst, err := l.s.st.Instance(id)
	if err != nil || inst.Node == "" {
		return path
	}
	addr := ""
	for _, m := range l.s.ml.Members() {
		if m.Name == inst.Node && m.State == membership.StateAlive && m.Meta.Role == membership.RoleWorker {
			addr = m.Meta.RPCAddr
		}
	}
	if addr == "" {
		return path
	}
	if err := l.fetch(addr, id, path); err != nil {
		l.s.log.Debug("fetch an instance's log from its worker", "instance", id, "node", inst.Node, "err", err)
	}
	return path
}

func (l *remoteLogs) fetch(addr, id, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+workerLogsPath+id, nil)
	if err != nil {
		return err
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		_ = os.Remove(path)
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", addr, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLogFetch+1))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(path, body, 0o600); err != nil {
		return err
	}
	if ns, err := strconv.ParseInt(resp.Header.Get("Gantry-Log-Mtime"), 10, 64); err == nil {
		t := time.Unix(0, ns)
		_ = os.Chtimes(path, t, t)
	}
	return nil
}
