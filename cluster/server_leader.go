package cluster

// The work only the Raft leader does: the controller (instances from
// services, rescheduling off down nodes), node health (gossip failures ->
// node down/ready), and adding servers seen through gossip as voters.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/controller"
	"github.com/gantry-dev/gantry/errdefs"
	"github.com/gantry-dev/gantry/membership"
	"github.com/gantry-dev/gantry/pki"
)

// reconcileEvery is how often the leader reconciles node health and the
// Raft voters from the gossip view, besides on every membership event
// (events can be dropped; the periodic pass makes that harmless).
const reconcileEvery = time.Second

// watchMembers turns membership events into a nudge for the leader and
// logs them.
func (s *serverNode) watchMembers(ctx context.Context) error {
	evs := s.ml.Events()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-evs:
			if !ok {
				return nil
			}
			s.log.Info("member "+ev.Type.String(), "member", ev.Member.Name, "role", ev.Member.Meta.Role, "addr", ev.Member.Addr)
			select {
			case s.changed <- struct{}{}:
			default:
			}
		}
	}
}

// leaderLoop runs the leader's work while this server leads.
func (s *serverNode) leaderLoop(ctx context.Context) error {
	ch := s.st.LeaderCh()
	lead := s.st.IsLeader()
	var run *leaderRun
	defer func() { run.stop() }()
	for {
		switch {
		case lead && run == nil:
			s.log.Info("leading: starting the controller and node health")
			run = startLeaderRun(ctx, s.leaderWork)
		case !lead && run != nil:
			s.log.Info("no longer leading: stopping the controller and node health")
			run.stop()
			run = nil
		}
		select {
		case <-ctx.Done():
			s.handOver(ctx)
			return nil
		case lead = <-ch:
		case <-time.After(reconcileEvery):
			// LeaderCh holds one value; confirm now and then.
			lead = s.st.IsLeader()
		}
	}
}

// handOver transfers leadership when this server stops while it leads,
// so the others need not wait out an election timeout: a rolling restart
// then barely pauses writes.
func (s *serverNode) handOver(ctx context.Context) {
	if !s.st.IsLeader() {
		return
	}
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.st.TransferLeadership(tctx, ""); err != nil {
		s.log.Warn("leadership transfer before stopping", "err", err)
		return
	}
	s.log.Info("handed leadership over before stopping", "took", time.Since(start).Round(time.Millisecond))
}

// leaderRun is one term's leader work: stop cancels it and waits for it.
type leaderRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startLeaderRun(ctx context.Context, fn func(context.Context)) *leaderRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &leaderRun{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		fn(ctx)
	}()
	return r
}

func (r *leaderRun) stop() {
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// leaderWork runs until ctx ends (leadership lost or shutdown); parts that
// fail are started again after a pause.
func (s *serverNode) leaderWork(ctx context.Context) {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return retry(gctx, "controller", s, func(c context.Context) error { return controller.New(s.st, s.log).Run(c) })
	})
	g.Go(func() error { return retry(gctx, "node health", s, s.reconcileLoop) })
	_ = g.Wait()
}

func retry(ctx context.Context, what string, s *serverNode, fn func(context.Context) error) error {
	for {
		err := fn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn(what+" stopped; starting it again", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// reconcileLoop applies the gossip view to the state on every membership
// change and every reconcileEvery.
func (s *serverNode) reconcileLoop(ctx context.Context) error {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reconcile membership", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		case <-t.C:
		}
	}
}

// reconcile marks nodes down or ready from gossip and adds servers that
// gossip but are not Raft voters yet.
func (s *serverNode) reconcile(ctx context.Context) error {
	members := s.ml.Members()
	alive := make(map[string]bool, len(members))
	for _, m := range members {
		alive[m.Name] = m.State == membership.StateAlive
	}
	var errs []error
	nodes, _ := s.st.Nodes()
	if ops := controller.NodeStatusChanges(nodes, alive, time.Now().UTC()); len(ops) > 0 {
		if _, err := s.st.Apply(ctx, ops...); err != nil {
			errs = append(errs, err)
		} else {
			s.log.Info("node status changed from gossip", "ops", len(ops))
		}
	}
	peers, err := s.st.Peers(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	known := map[string]string{}
	for _, p := range peers {
		known[p.ID] = p.Addr
	}
	for _, m := range members {
		if m.State != membership.StateAlive || m.Meta.Role != membership.RoleServer || m.Meta.RaftAddr == "" {
			continue
		}
		if addr, ok := known[m.Name]; ok && addr == m.Meta.RaftAddr {
			continue
		}
		// Gossip is not proof: every worker holds the gossip key and could
		// claim to be a server, and each bogus voter added weakens the
		// quorum until the group stalls. Only an address that answers with
		// the cluster's server certificate for that name becomes a voter.
		if err := s.proveServer(ctx, m.Name, m.Meta.RaftAddr); err != nil {
			s.log.Warn("not adding a gossiped server to the Raft group", "server", m.Name, "raft", m.Meta.RaftAddr, "err", err)
			errs = append(errs, err)
			continue
		}
		start := time.Now()
		if err := s.st.AddVoter(ctx, m.Name, m.Meta.RaftAddr); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("added a server to the Raft group", "server", m.Name, "raft", m.Meta.RaftAddr, "took", time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

// proveServer checks that raftAddr answers TLS with a server certificate of
// the cluster CA for name.
func (s *serverNode) proveServer(ctx context.Context, name, raftAddr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: s.id.reloader.ClientTLS(s.id.cert.CAPEM, pki.RoleServer)}
	c, err := d.DialContext(ctx, "tcp", raftAddr)
	if err != nil {
		return fmt.Errorf("server %q gossips Raft address %s, which does not answer as a server of this cluster: %w: %w", name, raftAddr, err, errdefs.ErrPermission)
	}
	defer c.Close()
	cs := c.(*tls.Conn).ConnectionState()
	role, got, err := pki.PeerRole(&cs)
	if err != nil {
		return err
	}
	if role != pki.RoleServer || got != name {
		return fmt.Errorf("server %q gossips Raft address %s, where %s %q answers: %w", name, raftAddr, role, got, errdefs.ErrPermission)
	}
	return nil
}
