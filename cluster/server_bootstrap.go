package cluster

// The first server's join tokens and cluster admin token, and the
// --bootstrap-expect mode where the Raft group forms only once the expected
// number of servers gossip.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/mcp"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
	"github.com/gantry-dev/gantry/state"
)

func expectOrZero(n int) int {
	if n > 1 {
		return n
	}
	return 0
}

func joinTokenFile(role pki.Role) string {
	if role == pki.RoleWorker {
		return WorkerJoinTokenFile
	}
	return ServerJoinTokenFile
}

// makeJoinTokens makes the first server and worker join tokens and writes
// them (0600) into the data dir; recordBootstrapTokens puts them in the
// state once there is a leader.
func (s *serverNode) makeJoinTokens() (server, worker string, err error) {
	out := map[pki.Role]string{}
	for _, role := range []pki.Role{pki.RoleServer, pki.RoleWorker} {
		tok, _, err := pki.NewJoinToken(role, s.ca.Cert.Raw)
		if err != nil {
			return "", "", err
		}
		if err := pki.WriteFileAtomic(filepath.Join(s.o.Node.DataDir, joinTokenFile(role)), []byte(tok+"\n"), 0o600); err != nil {
			return "", "", err
		}
		out[role] = tok
	}
	return out[pki.RoleServer], out[pki.RoleWorker], nil
}

// localToken reads this server's token file for role, if it has one.
func (s *serverNode) localToken(role pki.Role) (pki.JoinToken, time.Time, bool) {
	path := filepath.Join(s.o.Node.DataDir, joinTokenFile(role))
	b, err := os.ReadFile(path)
	if err != nil {
		return pki.JoinToken{}, time.Time{}, false
	}
	t, err := pki.ParseJoinToken(strings.TrimSpace(string(b)))
	if err != nil || t.Role != role {
		return pki.JoinToken{}, time.Time{}, false
	}
	fi, err := os.Stat(path)
	if err != nil {
		return pki.JoinToken{}, time.Time{}, false
	}
	return t, fi.ModTime(), true
}

// unrecordedLocalToken reports whether tok is one of this server's own
// bootstrap tokens, secret included, that the state does not hold yet.
func (s *serverNode) unrecordedLocalToken(tok pki.JoinToken) bool {
	mine, _, ok := s.localToken(tok.Role)
	if !ok || mine.ID != tok.ID || !mine.SecretMatches(tok.SecretHash) {
		return false
	}
	_, err := s.st.JoinToken(tok.ID)
	return errdefs.IsNotFound(err)
}

// recordBootstrapTokens puts the token files' tokens into the state if
// they are not there yet (a crash between writing and recording them is
// repaired at the next start), and makes the cluster admin token once.
// It needs a leader.
func (s *serverNode) recordBootstrapTokens(ctx context.Context) error {
	for _, role := range []pki.Role{pki.RoleServer, pki.RoleWorker} {
		t, made, ok := s.localToken(role)
		if !ok {
			continue
		}
		if _, err := s.st.JoinToken(t.ID); err == nil {
			continue
		}
		expires := made.Add(s.o.JoinTokenTTL).UTC()
		if !expires.After(time.Now()) {
			continue
		}
		if _, err := s.st.Apply(ctx, state.PutJoinToken{ID: t.ID, Role: string(role), SecretHash: t.SecretHash,
			ExpiresAt: expires, CreatedBy: "bootstrap:" + s.o.Node.Name}); err != nil && !errdefs.IsConflict(err) {
			return fmt.Errorf("record the %s join token: %w", role, err)
		}
	}
	path := filepath.Join(s.o.Node.DataDir, ClusterAdminTokenFile)
	if _, err := os.Stat(path); err == nil || !s.isCreator() {
		return nil
	}
	// An admin API token, replicated, so one token file works on every
	// server (each server's admin.token works on that server only).
	ct, err := NewAuth(s.st, "", nil).CreateToken(ctx, "cluster-admin", mcp.ScopeAdmin)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, []byte(ct.Token+"\n"), 0o600)
}

// isCreator reports whether this server made the cluster (it holds the
// bootstrap token files).
func (s *serverNode) isCreator() bool {
	_, _, ok := s.localToken(pki.RoleServer)
	return ok
}

// recordBootstrapTokensLater waits for the group to form, then records.
func (s *serverNode) recordBootstrapTokensLater(ctx context.Context) error {
	if !s.isCreator() {
		return nil
	}
	for {
		if err := s.st.WaitLeader(ctx); err != nil {
			return nil // ctx ended
		}
		err := s.recordBootstrapTokens(ctx)
		if err == nil {
			s.log.Info("bootstrap tokens recorded in the replicated state")
			return nil
		}
		s.log.Warn("record bootstrap tokens; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// bootstrapExpect forms the Raft group once n servers gossip: each server
// proposes the same configuration (every alive server, sorted by name);
// raft keeps the first one a server records and elects a leader. A server
// whose store has a configuration already ignores the call.
func (s *serverNode) bootstrapExpect(ctx context.Context, n int) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	waiting := time.Now()
	logged := false
	for {
		if id, _ := s.st.Leader(); id != "" {
			return nil
		}
		var peers []state.Peer
		for _, m := range s.ml.Members() {
			if m.State == membership.StateAlive && m.Meta.Role == membership.RoleServer && m.Meta.RaftAddr != "" {
				peers = append(peers, state.Peer{ID: m.Name, Addr: m.Meta.RaftAddr})
			}
		}
		if len(peers) >= n {
			// Gossip is no proof (workers hold its key too): keep the
			// servers whose Raft address answers as that server.
			peers = slices.DeleteFunc(peers, func(p state.Peer) bool {
				err := s.proveServer(ctx, p.ID, p.Addr)
				if err != nil {
					s.log.Warn("bootstrap-expect: leaving out a gossiped server", "server", p.ID, "raft", p.Addr, "err", err)
				}
				return err != nil
			})
		}
		if len(peers) >= n {
			slices.SortFunc(peers, func(a, b state.Peer) int { return strings.Compare(a.ID, b.ID) })
			err := s.st.BootstrapCluster(ctx, peers)
			if err == nil {
				s.log.Info("bootstrap-expect: proposed the first Raft configuration", "servers", len(peers), "waited", time.Since(waiting).Round(time.Millisecond))
				return nil
			}
			if errors.Is(err, context.Canceled) {
				return nil
			}
			s.log.Warn("bootstrap-expect: bootstrap failed; retrying", "err", err)
		} else if !logged && time.Since(waiting) > 10*time.Second {
			s.log.Info("bootstrap-expect: waiting for servers to gossip", "have", len(peers), "want", n)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
