package agent

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// This file is the agent's side of failure detection: it feeds gossip
// events to the health monitor, probes peers over their API, and, on the
// leader only, turns failed verdicts into cluster state and raft
// membership changes.

// peerProber probes a peer agent directly: a ping over its raft port,
// answered by the agent process itself (so a paused or dead process fails
// it), reachable between machines and under raft's mutual TLS when that is
// on, unlike the HTTP API, which binds the loopback by default.
type peerProber struct{ a *Agent }

func (p peerProber) Probe(ctx context.Context, node string) error {
	n, ok := p.a.gossip.Member(node)
	if !ok || n.Meta.RaftAddr == "" {
		return fmt.Errorf("no raft address known for %s", node)
	}
	return p.a.raft.Ping(ctx, n.Meta.RaftAddr)
}

// observeGossip turns one gossip event into health observations, and keeps
// this node's published suspicions up to date.
func (a *Agent) observeGossip(ev gossip.Event) {
	if ev.Node.ID == a.cfg.NodeID {
		return
	}
	now := time.Now()
	switch ev.Type {
	case gossip.EventSuspect:
		a.monitor.Observe(health.Suspect(ev.Node.ID, now))
		a.setSuspect(ev.Node.ID, true)
	case gossip.EventDead:
		a.monitor.Observe(health.Dead(ev.Node.ID, now))
		a.setSuspect(ev.Node.ID, false)
	case gossip.EventLeft:
		a.monitor.Observe(health.Left(ev.Node.ID, now))
		a.setSuspect(ev.Node.ID, false)
	case gossip.EventAlive, gossip.EventJoin:
		a.monitor.Observe(health.Alive(ev.Node.ID, now))
		a.setSuspect(ev.Node.ID, false)
	}
	if ev.Type == gossip.EventJoin || ev.Type == gossip.EventUpdate {
		// A peer's own probes suspect these nodes: start confirming now
		// rather than when this agent's probe round reaches them. Only
		// this agent's probes decide a verdict.
		for _, id := range ev.Node.Meta.Suspects {
			if id == a.cfg.NodeID {
				continue
			}
			if n, ok := a.gossip.Member(id); ok && (n.State == gossip.StateAlive || n.State == gossip.StateSuspect) {
				a.monitor.Observe(health.Suspect(id, now))
			}
		}
	}
}

// suspects are the peers this node's own memberlist probes suspect,
// published in its gossip metadata (gossip.Meta.Suspects).
type suspects struct {
	mu    sync.Mutex
	set   map[string]bool
	dirty chan struct{}
}

func (a *Agent) setSuspect(id string, on bool) {
	a.suspects.mu.Lock()
	changed := a.suspects.set[id] != on
	if on {
		a.suspects.set[id] = true
	} else {
		delete(a.suspects.set, id)
	}
	a.suspects.mu.Unlock()
	if changed {
		select {
		case a.suspects.dirty <- struct{}{}:
		default:
		}
	}
}

// currentSuspects returns at most gossip.MaxSuspects suspects, sorted.
func (a *Agent) currentSuspects() []string {
	a.suspects.mu.Lock()
	defer a.suspects.mu.Unlock()
	var out []string
	for id := range a.suspects.set {
		out = append(out, id)
	}
	sort.Strings(out)
	if len(out) > gossip.MaxSuspects {
		out = out[:gossip.MaxSuspects]
	}
	return out
}

// suspectPublisher republishes this node's metadata when its suspicions
// change. UpdateMeta waits for the broadcast, so it runs here rather than
// on the gossip event loop.
func (a *Agent) suspectPublisher() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.suspects.dirty:
		}
		if err := a.gossip.UpdateMeta(a.localMeta()); err != nil && a.ctx.Err() == nil {
			a.log.Debug("publishing suspicions", "error", err)
		}
	}
}

// verdictLoop logs and counts verdicts and wakes the leader, which reads
// the monitor's state level-triggered in reconcile (so a verdict decided
// while another agent led is still acted on).
func (a *Agent) verdictLoop() {
	for {
		select {
		case <-a.ctx.Done():
			return
		case v, ok := <-a.monitor.Verdicts():
			if !ok {
				return
			}
			a.log.Info("health verdict", "peer", v.Node, "verdict", v.Kind.String(), "failures", v.Failures,
				"suspected_for", v.SuspectedFor.String(), "reason", v.Reason)
			a.metrics.verdicts.WithLabelValues(v.Kind.String()).Inc()
			if v.Kind == health.VerdictFailed && v.SuspectedFor > 0 {
				a.metrics.suspicionToVerdict.Observe(v.SuspectedFor.Seconds())
			}
			a.kickLeader()
		}
	}
}

// frozen reports whether automatic removals are frozen and why. troubled
// counts the members the state still holds alive that this agent's
// detector holds suspect or failed. Failures already marked count only
// while they are recent, or not handled yet (health.FreezeCounts), their
// age measured on this agent's monotonic clock.
func (a *Agent) frozen(state *failover.Cluster, troubled int) (bool, string) {
	total, failed := a.freezeCounts(state, troubled)
	return health.FreezeDecision(total, failed, a.cfg.MaxFailed, state.Maintenance)
}

// freezeCounts are FreezeDecision's total and failed (see frozen).
func (a *Agent) freezeCounts(state *failover.Cluster, troubled int) (total, failed int) {
	inStatus := a.ages.observeMembers(state, a.clock.Elapsed())
	present := 0
	var failedIDs []string
	for _, id := range state.MemberIDs() {
		switch state.Members[id].Status {
		case failover.StatusLeft:
		case failover.StatusFailed:
			failedIDs = append(failedIDs, id)
		default:
			present++
		}
	}
	var marked []health.MarkedFailure
	if len(failedIDs) > 0 {
		busy := a.involvedInPartitions(failedIDs)
		inConfig, configKnown := a.raftServerIDs()
		for _, id := range failedIDs {
			handled := configKnown && !busy[id] && !inConfig[state.Members[id].RaftID]
			marked = append(marked, health.MarkedFailure{FailedFor: inStatus[id], Handled: handled})
		}
	}
	return health.FreezeCounts(present, troubled, marked, a.freezeWindows())
}

// simultaneousFailureProbes sets the at-once window of the freeze in probe
// intervals: failures confirmed within 50 probe intervals of each other
// (10 s with the local profile, 50 s lan, 150 s wan) count as at once.
// That is about ten times the time failure detection takes with each
// profile (SIGKILL to failed everywhere, median 1.2 s local, 3.9 s lan,
// 16.7 s wan in docs/benchmarks.md), so nodes cut off together are counted
// together however their detections spread.
const simultaneousFailureProbes = 50

// freezeWindows are how long a marked failure counts towards the freeze:
// at once, within simultaneousFailureProbes probe intervals whether handled
// or not; after that while it is not handled, for as long as handling it
// may take, the replace delay plus one migration timeout (the default
// timeout when copies never time out).
func (a *Agent) freezeWindows() health.FreezeWindows {
	timeout := a.cfg.MigrationTimeout.D()
	if timeout <= 0 {
		timeout = DefaultConfig().MigrationTimeout.D()
	}
	hc, err := a.healthConfig() // checked at start: cannot fail here
	if err != nil {
		hc = health.DefaultConfig()
	}
	return health.FreezeWindows{
		AtOnce:   simultaneousFailureProbes * hc.ProbeInterval,
		Handling: a.cfg.ReplaceDelay.D() + timeout,
	}
}

// involvedInPartitions reports which of ids hold a copy of a partition, or
// are the source or target of a copy in flight.
func (a *Agent) involvedInPartitions(ids []string) map[string]bool {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]bool{}
	a.raft.Read(func(c *failover.Cluster) {
		for _, p := range c.Partitions {
			for _, h := range p.Holders() {
				if want[h] {
					out[h] = true
				}
			}
			for _, m := range p.Migrations {
				if want[m.Target] {
					out[m.Target] = true
				}
				if want[m.Source] {
					out[m.Source] = true
				}
			}
		}
	})
	return out
}

// raftServerIDs returns the raft server IDs of the configuration, and
// false when raft cannot say.
func (a *Agent) raftServerIDs() (map[string]bool, bool) {
	servers, err := a.raft.Configuration()
	if err != nil {
		return nil, false
	}
	out := make(map[string]bool, len(servers))
	for _, s := range servers {
		out[s.ID] = true
	}
	return out, true
}

// markFailures is the leader's level-triggered reaction to the monitor: a
// member the cluster counts alive that the monitor holds failed is marked
// failed, in one raft entry with the promotions of its partitions.
func (a *Agent) markFailures() error {
	state := a.memberState()
	var newlyFailed []string
	troubled := 0
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if id == a.cfg.NodeID || (m.Status != failover.StatusAlive && m.Status != failover.StatusSuspect) {
			continue
		}
		h, ok := a.monitor.Node(id)
		if !ok || h.State == health.StateHealthy {
			continue
		}
		// Suspects count towards the freeze too: when several nodes go
		// at once, the first verdict must not be acted on while the
		// others are still being confirmed.
		troubled++
		if h.State == health.StateFailed {
			newlyFailed = append(newlyFailed, id)
		}
	}
	total, failed := a.freezeCounts(state, troubled)
	a.failuresAtOnce.Store(int64(failed))
	if len(newlyFailed) == 0 {
		a.setFreeze(false, "")
		return nil
	}
	if frozen, reason := health.FreezeDecision(total, failed, a.cfg.MaxFailed, state.Maintenance); frozen {
		a.setFreeze(true, reason)
		return nil
	}
	a.setFreeze(false, "")
	now := a.clock.Now().UnixNano()
	state = a.raft.Snapshot() // the promotions need the partition table
	for _, id := range newlyFailed {
		actions := failover.PlanFailure(state, id, a.planSeed())
		res, err := a.apply(failover.Command{Kind: failover.CmdSetStatus, At: now, Node: id, Status: failover.StatusFailed, Actions: actions})
		if err != nil {
			return fmt.Errorf("mark %s failed: %w", id, err)
		}
		a.metrics.removals.Inc()
		a.recordEvent("member.failed", fmt.Sprintf("%s failed; %d primaries promoted", id, res.Applied), actions)
		a.log.Warn("member failed", "member", id, "promotions", res.Applied, "stale", res.Stale)
		state = a.raft.Snapshot()
	}
	return nil
}

// setFreeze records the freeze state for status and metrics, logging
// changes.
func (a *Agent) setFreeze(frozen bool, reason string) {
	a.freezeMu.Lock()
	changed := a.freezeReason != reason
	a.freezeReason = reason
	a.freezeMu.Unlock()
	if !changed {
		return
	}
	if frozen {
		a.log.Warn("automatic removals frozen", "reason", reason)
		a.metrics.frozen.Set(1)
	} else {
		a.log.Info("automatic removals resumed")
		a.metrics.frozen.Set(0)
	}
}

func (a *Agent) freezeState() string {
	a.freezeMu.Lock()
	defer a.freezeMu.Unlock()
	return a.freezeReason
}

// removableFailedServers returns the raft server IDs of failed members
// that may leave the raft configuration now (see deadServersToRemove),
// with the ages this agent measured.
func (a *Agent) removableFailedServers(state *failover.Cluster, voters []string, inConfig map[string]bool, frozen bool) []string {
	inStatus := a.ages.observeMembers(state, a.clock.Elapsed())
	detectorFailed := map[string]time.Duration{}
	for id, m := range state.Members {
		if m.Status != failover.StatusFailed && m.Status != failover.StatusLeft && a.detectorHoldsFailed(id) {
			detectorFailed[id] = a.detectorFailedFor(id)
		}
	}
	return deadServersToRemove(state, voters, inConfig, frozen, a.raftID, inStatus, detectorFailed)
}

// deadServersToRemove decides (purely) which raft servers of dead members
// leave the configuration now, oldest failure first within the quorum
// rule: at most (voters-1)/2 voters at a time (raft-autopilot's rule), so
// that a wrong failure view can never remove a majority. inStatus is how
// long each member has had its status; detectorFailed how long this
// agent's detector has held failed the members the state does not hold
// failed (yet); self is this agent's raft server ID, never removed here.
//
// Dead voters are removed even while removals are frozen (frozen): a
// voter is dead when the member is marked failed, or when the detector
// holds it failed while the freeze keeps it alive in the state. Otherwise
// the quorum would go on depending on dead members while live agents could
// vote in their place (raftctl.PlanVoters promotes them once the dead are
// out), and the next death could cost the quorum for good, as 2 dead
// voters of 3 did beside 4 live agents. The quorum rule is what makes this
// safe under a network fault too: the voters removed by mistake are a
// minority and cannot have formed a quorum of their own. Dead non-voters
// leave too, freeze or not: the quorum does not depend on them, and a dead
// voter demoted by voter planning (to keep the voter count odd) must not
// stay in the configuration as a non-voter for the whole freeze. A healed
// one is added back as a non-voter like any returning member.
func deadServersToRemove(state *failover.Cluster, voters []string, inConfig map[string]bool, frozen bool, self string,
	inStatus, detectorFailed map[string]time.Duration) []string {
	var out []string
	var deadVoters []health.FailedVoter
	isVoter := map[string]bool{}
	for _, v := range voters {
		isVoter[v] = true
	}
	for _, id := range state.MemberIDs() {
		m := state.Members[id]
		if m.RaftID == "" || !inConfig[m.RaftID] || m.RaftID == self {
			continue
		}
		failedFor, detectorHolds := detectorFailed[id]
		switch {
		case m.Status == failover.StatusFailed && isVoter[m.RaftID]:
			deadVoters = append(deadVoters, health.FailedVoter{ID: m.RaftID, FailedFor: inStatus[id]})
		case m.Status == failover.StatusFailed:
			out = append(out, m.RaftID)
		case m.Status == failover.StatusLeft:
			// removed as a departed member, whatever the freeze
		case isVoter[m.RaftID] && detectorHolds:
			deadVoters = append(deadVoters, health.FailedVoter{ID: m.RaftID, FailedFor: failedFor})
		case detectorHolds && frozen:
			// A dead non-voter the freeze keeps alive in the state.
			out = append(out, m.RaftID)
		}
	}
	out = append(out, health.RemovableVoters(voters, deadVoters, 1)...)
	sort.Strings(out)
	return out
}

// detectorHoldsFailed reports whether this agent's failure detector holds
// member id failed (or held down after flapping).
func (a *Agent) detectorHoldsFailed(id string) bool {
	h, ok := a.monitor.Node(id)
	return ok && (h.State == health.StateFailed || h.State == health.StateHeldDown)
}

// detectorFailedFor is how long the detector's view of id has been what it
// is (for ordering removals only).
func (a *Agent) detectorFailedFor(id string) time.Duration {
	h, ok := a.monitor.Node(id)
	if !ok || h.LastChange.IsZero() {
		return 0
	}
	return max(time.Since(h.LastChange), 0)
}

// quorumLoop tracks whether this agent has seen a leader within the
// election timeout; without one it reports quorum lost.
func (a *Agent) quorumLoop() {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var lastSeen time.Time // zero until this agent has a raft log
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-ticker.C:
		}
		// Only an agent that is part of a cluster (it has a raft log) can
		// lose its quorum; a new agent waiting to be added has none yet,
		// and the first election after a bootstrap is not a loss.
		if a.raft.Stats().LastIndex == 0 {
			continue
		}
		if a.knownLeader() || lastSeen.IsZero() {
			lastSeen = time.Now()
		}
		lost := time.Since(lastSeen) > a.electionTimeout
		if a.quorumLost.Swap(lost) != lost {
			if lost {
				a.log.Warn("quorum lost: no leader", "since", lastSeen.Format(time.RFC3339Nano))
				a.metrics.quorumLost.Set(1)
			} else {
				a.log.Info("quorum regained")
				a.metrics.quorumLost.Set(0)
			}
			a.notifyQuorum(lost)
		}
	}
}
