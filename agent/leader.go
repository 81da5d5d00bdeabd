package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// applyRaftProfile sets raft's timings for a profile. Raft's own defaults
// (1 s heartbeat and election timeouts, 500 ms leader lease) serve both
// local and lan: halving them for loopback was tried and made leaders step
// down when several agents share two busy cores (a leader that misses its
// lease for 250 ms is deposed), for a gain of half a second on a leader's
// death, which failure detection hides anyway. A WAN needs three times as
// long to avoid elections on every slow link.
func applyRaftProfile(rc *raftctl.Config, profile string) {
	switch profile {
	case "wan":
		rc.HeartbeatTimeout = 3 * time.Second
		rc.ElectionTimeout = 3 * time.Second
		rc.LeaderLeaseTimeout = 1500 * time.Millisecond
	default:
		rc.HeartbeatTimeout = time.Second
		rc.ElectionTimeout = time.Second
		rc.LeaderLeaseTimeout = 500 * time.Millisecond
	}
}

// reconcileInterval is how often the leader reconciles even when nothing
// woke it: the safety net behind the event-driven wake-ups.
const reconcileInterval = time.Second

// bootstrapStableFor is how long the set of agents seen in gossip must stay
// the same before this agent bootstraps with it. Agents that start together
// see each other within a few gossip rounds; waiting for a stable view
// makes every one of them propose the same configuration.
const bootstrapStableFor = 500 * time.Millisecond

// bootstrapLoop bootstraps raft once BootstrapExpect agents see each other.
// Every agent of the first cluster runs it and they all compute the same
// configuration: the BootstrapExpect agents with the smallest node IDs among
// those gossip shows, each as a voter. Raft accepts identical bootstraps on
// every node; an agent outside that set does not bootstrap and is added by
// the leader later. Before bootstrapping, the agent asks each peer whether
// it already has a raft log (see peerInCluster).
func (a *Agent) bootstrapLoop() {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var lastView string
	var since time.Time
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-ticker.C:
		}
		if a.raft.HasState() || a.knownLeader() {
			return
		}
		var ready []gossip.Node
		for _, n := range a.gossip.Members() {
			if n.State == gossip.StateAlive && n.Meta.RaftID != "" && n.Meta.RaftAddr != "" {
				ready = append(ready, n)
			}
		}
		if len(ready) < a.cfg.BootstrapExpect {
			lastView = ""
			continue
		}
		sort.Slice(ready, func(i, j int) bool { return ready[i].ID < ready[j].ID })
		ready = ready[:a.cfg.BootstrapExpect]
		view := ""
		self := false
		for _, n := range ready {
			view += n.ID + "=" + n.Meta.RaftID + ";"
			if n.ID == a.cfg.NodeID {
				self = true
			}
		}
		if view != lastView {
			lastView, since = view, time.Now()
			continue
		}
		if time.Since(since) < bootstrapStableFor {
			continue
		}
		if !self {
			a.log.Info("not among the first agents; waiting to be added", "expect", a.cfg.BootstrapExpect)
			return
		}
		servers := make([]raftctl.Server, 0, len(ready))
		for _, n := range ready {
			servers = append(servers, raftctl.Server{ID: n.Meta.RaftID, Address: n.Meta.RaftAddr, Voter: true})
		}
		if peer, ok := a.peerInCluster(ready); ok {
			a.log.Info("a peer already has a raft log; not bootstrapping (its leader adds this agent)", "peer", peer)
			return
		}
		if err := a.raft.Bootstrap(servers); err != nil {
			a.log.Error("bootstrap failed", "error", err)
			continue
		}
		a.log.Info("bootstrapped raft", "servers", len(servers), "view", view)
		return
	}
}

// knownLeader reports whether raft knows a leader (then this agent is
// already part of a cluster).
func (a *Agent) knownLeader() bool {
	id, _ := a.raft.Leader()
	return id != ""
}

// peerInCluster asks the peers, over their raft ports, whether any of them
// already has a raft log. If one has, this agent does not bootstrap: either
// that peer bootstrapped the very same configuration a moment earlier (its
// election needs this agent's vote, which a server without a configuration
// grants, and its leader then replicates the configuration here), or it
// belongs to an existing cluster, beside which a second bootstrap would
// split the cluster.
func (a *Agent) peerInCluster(peers []gossip.Node) (string, bool) {
	for _, n := range peers {
		if n.ID == a.cfg.NodeID || n.Meta.RaftAddr == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
		st, err := a.raft.PingStatus(ctx, n.Meta.RaftAddr)
		cancel()
		if err == nil && st.LastIndex > 0 {
			return n.ID, true
		}
	}
	return "", false
}

// leaderLoop runs reconcile while this agent leads.
func (a *Agent) leaderLoop() {
	ticker := time.NewTicker(reconcileInterval)
	defer ticker.Stop()
	leading := false
	for {
		select {
		case <-a.ctx.Done():
			return
		case l := <-a.raft.LeadershipChanges():
			if l && !leading {
				a.log.Info("became leader")
				// A barrier makes sure every entry of earlier terms is
				// applied before the leader acts on the state.
				if err := a.raft.Barrier(10 * time.Second); err != nil {
					a.log.Warn("barrier after election failed", "error", err)
					continue
				}
			} else if !l && leading {
				a.log.Info("lost leadership")
			}
			leading = l
		case <-a.kick:
		case <-a.raft.Changes():
		case <-ticker.C:
		}
		if leading && a.raft.IsLeader() {
			if err := a.reconcile(); err != nil && a.ctx.Err() == nil {
				a.log.Warn("reconcile", "error", err)
			}
		}
	}
}

// reconcile does one round of the leader's work: bootstrap the table,
// register members seen in gossip, mark failures, forget members gone for
// good, keep the raft configuration in line with the members, keep the
// voter count at its target. Each step is idempotent
// so that a new leader simply finishes what its predecessor left half-done.
func (a *Agent) reconcile() error {
	state := a.memberState()
	if !state.Bootstrapped {
		return a.bootstrapTable()
	}
	if err := a.registerMembers(state); err != nil {
		return err
	}
	if err := a.markFailures(); err != nil {
		return err
	}
	if err := a.reapMembers(); err != nil {
		return err
	}
	if err := a.reconcileRaftConfig(a.memberState()); err != nil {
		return err
	}
	if err := a.reconcileVoters(); err != nil {
		return err
	}
	return a.runPlanner()
}

// memberState copies the cluster state without its partition table: what
// the reconcile steps that only look at members need, at a fraction of the
// cost of a full copy when there are many partitions.
func (a *Agent) memberState() *failover.Cluster {
	out := failover.NewCluster()
	a.raft.Read(func(c *failover.Cluster) {
		out.Bootstrapped = c.Bootstrapped
		out.Settings = c.Settings
		out.Maintenance = c.Maintenance
		for id, m := range c.Members {
			out.Members[id] = m
		}
	})
	return out
}

// bootstrapTable applies the bootstrap command: settings and the partition
// table over the agents of the raft configuration.
func (a *Agent) bootstrapTable() error {
	if a.cfg.BootstrapExpect == 0 {
		return nil
	}
	servers, err := a.raft.Configuration()
	if err != nil {
		return err
	}
	byRaftID := map[string]gossip.Node{}
	for _, n := range a.gossip.Members() {
		byRaftID[n.Meta.RaftID] = n
	}
	var members []failover.Member
	for _, s := range servers {
		n, ok := byRaftID[s.ID]
		if !ok {
			return fmt.Errorf("bootstrap: raft server %s not in gossip yet", s.ID)
		}
		m := memberFromGossip(n)
		m.Voter = s.Voter
		members = append(members, m)
	}
	settings := failover.Settings{Partitions: a.cfg.Partitions, ReplicationFactor: a.cfg.ReplicationFactor}
	// The table travels in the entry: every agent applies the same layout,
	// whatever version of InitialTable it runs.
	byID := make(map[string]failover.Member, len(members))
	for _, m := range members {
		m.Status = failover.StatusAlive
		byID[m.ID] = m
	}
	table := failover.InitialTable(settings, byID)
	_, err = a.apply(failover.Command{Kind: failover.CmdBootstrap, At: time.Now().UnixNano(), Settings: &settings, Members: members, Table: table})
	if errors.Is(err, failover.ErrAlreadyBootstrapped) {
		return nil
	}
	if err == nil {
		a.log.Info("partition table created", "partitions", settings.Partitions, "replication_factor", settings.ReplicationFactor, "members", len(members))
	}
	return err
}

// registerMembers adds agents seen alive in gossip to the cluster state,
// updates those whose addresses, raft ID or app health changed, and takes
// back a failed or departed member that is alive again (a rejoin) once the
// failure detector no longer holds it down.
func (a *Agent) registerMembers(state *failover.Cluster) error {
	for _, n := range a.gossip.Members() {
		if n.State != gossip.StateAlive || n.Meta.RaftID == "" || n.Meta.Leaving {
			continue
		}
		want := memberFromGossip(n)
		cur, known := state.Members[n.ID]
		away := known && (cur.Status == failover.StatusFailed || cur.Status == failover.StatusLeft)
		if away && n.ID != a.cfg.NodeID {
			if h, ok := a.monitor.Node(n.ID); ok && h.State != health.StateHealthy {
				continue // still failed or held down by flap damping
			}
		}
		if !known || away || !sameRegistration(cur, want) {
			if _, err := a.apply(failover.Command{Kind: failover.CmdUpsertMember, At: time.Now().UnixNano(), Member: &want}); err != nil {
				return fmt.Errorf("register %s: %w", n.ID, err)
			}
			switch {
			case !known:
				a.log.Info("member registered", "member", n.ID, "raft_id", want.RaftID)
			case away:
				a.log.Info("member rejoined", "member", n.ID, "raft_id", want.RaftID, "was", cur.Status)
				a.recordEvent("member.rejoin", fmt.Sprintf("%s is back (was %s)", n.ID, cur.Status), nil)
			default:
				a.log.Info("member updated", "member", n.ID, "raft_id", want.RaftID)
			}
		}
		if known && cur.AppUnhealthy != n.Meta.AppUnhealthy {
			if _, err := a.apply(failover.Command{Kind: failover.CmdSetAppHealth, At: time.Now().UnixNano(), Node: n.ID, AppUnhealthy: n.Meta.AppUnhealthy}); err != nil {
				return fmt.Errorf("app health of %s: %w", n.ID, err)
			}
			a.log.Info("app health changed", "member", n.ID, "app_unhealthy", n.Meta.AppUnhealthy)
		}
	}
	return nil
}

func sameRegistration(a, b failover.Member) bool {
	return a.RaftID == b.RaftID && a.GossipAddr == b.GossipAddr && a.RaftAddr == b.RaftAddr &&
		a.APIAddr == b.APIAddr && a.AppAddr == b.AppAddr && a.Zone == b.Zone && a.Weight == b.Weight
}

// reconcileRaftConfig adds live members to raft as non-voters (or updates
// their address) and removes raft servers that are no member's current
// incarnation.
func (a *Agent) reconcileRaftConfig(state *failover.Cluster) error {
	servers, err := a.raft.Configuration()
	if err != nil {
		return err
	}
	inConfig := map[string]raftctl.Server{}
	for _, s := range servers {
		inConfig[s.ID] = s
	}
	current := map[string]bool{}
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if m.RaftID == "" {
			continue
		}
		current[m.RaftID] = true
		if m.Status != failover.StatusAlive && m.Status != failover.StatusSuspect {
			continue
		}
		if a.detectorHoldsFailed(id) {
			continue // a dead voter removed while frozen stays out until it is back
		}
		if s, ok := inConfig[m.RaftID]; ok && s.Address == m.RaftAddr {
			continue
		}
		if err := a.raft.AddNonvoter(m.RaftID, m.RaftAddr); err != nil {
			return fmt.Errorf("add %s to raft: %w", id, err)
		}
		a.log.Info("added to raft as non-voter", "member", id, "raft_id", m.RaftID, "addr", m.RaftAddr)
	}
	for _, s := range servers {
		if current[s.ID] || s.ID == a.raftID {
			continue
		}
		if err := a.raft.Remove(s.ID); err != nil {
			return fmt.Errorf("remove stale raft server %s: %w", s.ID, err)
		}
		a.log.Info("removed stale raft server", "raft_id", s.ID)
	}
	// Members that left, or that were forgotten, are removed whatever
	// their number and whatever the freeze: they said so, or an operator
	// did (agent force-leave).
	var voters []string
	present := map[string]bool{}
	for _, s := range servers {
		present[s.ID] = true
		if s.Voter {
			voters = append(voters, s.ID)
		}
	}
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if m.Status == failover.StatusLeft && m.RaftID != "" && present[m.RaftID] && m.RaftID != a.raftID {
			if err := a.raft.Remove(m.RaftID); err != nil {
				return fmt.Errorf("remove departed raft server %s: %w", m.RaftID, err)
			}
			a.log.Info("removed departed member from raft", "member", id, "raft_id", m.RaftID)
		}
	}
	// Failed members leave the configuration, voters at most (voters-1)/2
	// at a time so that a wrong failure view can never remove a majority;
	// dead voters even while removals are frozen, unless an operator
	// switched maintenance on (see removableFailedServers).
	if state.Maintenance {
		return nil
	}
	frozen, _ := a.frozen(state, 0)
	for _, id := range a.removableFailedServers(state, voters, present, frozen) {
		if err := a.raft.Remove(id); err != nil {
			return fmt.Errorf("remove failed raft server %s: %w", id, err)
		}
		a.log.Warn("removed failed member from raft", "raft_id", id)
	}
	return nil
}

// caughtUpSlack is how many entries a non-voter may trail the leader's
// commit index and still count as caught up for promotion.
const caughtUpSlack = 64

// voterStableFor is how long a non-voter must be healthy and caught up
// before it is promoted (autopilot's server stabilisation time).
const voterStableFor = 2 * time.Second

// reconcileVoters promotes caught-up non-voters while voters are below
// target and records voter flags in the cluster state.
func (a *Agent) reconcileVoters() error {
	servers, err := a.raft.Configuration()
	if err != nil {
		return err
	}
	gossipByRaftID := map[string]gossip.Node{}
	for _, n := range a.gossip.Members() {
		gossipByRaftID[n.Meta.RaftID] = n
	}
	// In service by the committed state, not by gossip's momentary view:
	// see raftctl.ServerHealth.InService.
	state := a.memberState()
	inService := map[string]bool{}
	for _, m := range state.Members {
		if m.RaftID != "" && m.CanHold() {
			inService[m.RaftID] = true
		}
	}
	commit := a.raft.Stats().CommitIndex
	var health []raftctl.ServerHealth
	for _, s := range servers {
		h := raftctl.ServerHealth{ID: s.ID, Voter: s.Voter, Leader: s.ID == a.raftID, InService: inService[s.ID]}
		n, ok := gossipByRaftID[s.ID]
		h.Healthy = ok && n.State == gossip.StateAlive && !n.Meta.Leaving
		if s.ID == a.raftID {
			h.Healthy = a.LeaveProgress().Phase == LeaveNone
		}
		if h.Healthy {
			h.CaughtUp = s.Voter || a.peerCaughtUp(n, commit)
		}
		h.StableFor = a.stableFor(s.ID, h.Healthy)
		health = append(health, h)
	}
	a.forgetStability(servers)
	promote, demote := raftctl.PlanVoters(health, a.cfg.Voters, voterStableFor)
	for _, id := range promote {
		if err := a.raft.Promote(id); err != nil {
			return fmt.Errorf("promote %s: %w", id, err)
		}
		a.log.Info("promoted to voter", "raft_id", id)
	}
	for _, id := range demote {
		if err := a.raft.Demote(id); err != nil {
			return fmt.Errorf("demote %s: %w", id, err)
		}
		a.log.Info("demoted to non-voter", "raft_id", id)
	}
	if len(promote)+len(demote) > 0 {
		if servers, err = a.raft.Configuration(); err != nil {
			return err
		}
	}
	voter := map[string]bool{}
	for _, s := range servers {
		voter[s.ID] = s.Voter
	}
	state = a.memberState()
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if want := voter[m.RaftID]; m.Voter != want {
			if _, err := a.apply(failover.Command{Kind: failover.CmdSetVoter, At: time.Now().UnixNano(), Node: id, Voter: want}); err != nil {
				return err
			}
		}
	}
	return nil
}

// stableFor is how long a server has been healthy without interruption,
// on this agent's monotonic clock (0 when it is not healthy now); it is
// leader-local bookkeeping, reset when the server stops qualifying.
func (a *Agent) stableFor(raftID string, ok bool) time.Duration {
	a.stableMu.Lock()
	defer a.stableMu.Unlock()
	if a.stable == nil {
		a.stable = map[string]time.Duration{}
	}
	if !ok {
		delete(a.stable, raftID)
		return 0
	}
	now := a.clock.Elapsed()
	since, seen := a.stable[raftID]
	if !seen {
		since = now
		a.stable[raftID] = now
	}
	return now - since
}

// forgetStability drops the stability of servers no longer in the
// configuration: a server removed while failed (cut off, paused) must be
// stable for voterStableFor again after it is added back, not be promoted
// on the strength of the time before its failure.
func (a *Agent) forgetStability(servers []raftctl.Server) {
	inConfig := make(map[string]bool, len(servers))
	for _, s := range servers {
		inConfig[s.ID] = true
	}
	a.stableMu.Lock()
	defer a.stableMu.Unlock()
	for id := range a.stable {
		if !inConfig[id] {
			delete(a.stable, id)
		}
	}
}

// peerCaughtUp asks a non-voter, over its raft port, how far it has
// applied.
func (a *Agent) peerCaughtUp(n gossip.Node, commit uint64) bool {
	if n.Meta.RaftAddr == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
	defer cancel()
	st, err := a.raft.PingStatus(ctx, n.Meta.RaftAddr)
	if err != nil {
		return false
	}
	return st.AppliedIndex+caughtUpSlack >= commit
}

// applyTimeout bounds one command, forwarding to the leader included.
const applyTimeout = 10 * time.Second

// apply commits cmd through raft: directly on the leader, forwarded to the
// leader over the raft port otherwise (under mutual TLS when configured).
func (a *Agent) apply(cmd failover.Command) (failover.Result, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(a.ctx, applyTimeout)
	defer cancel()
	res, err := a.raft.ApplyForwarded(ctx, cmd)
	a.metrics.applyLatency.Observe(time.Since(start).Seconds())
	return res, err
}
