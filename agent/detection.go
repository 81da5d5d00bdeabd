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
// events to the health monitor, probes peers over their raft port,
// publishes its suspicions, and watches for the loss of the quorum. The
// leader turns the monitor's verdicts into cluster state and raft
// membership changes (control.Controller's reconcile round).

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
	// Named: another agent answering at a dead node's address (its IP
	// given to a new machine, its port reused) must not keep it alive.
	_, err := p.a.raft.PingServer(ctx, n.Meta.RaftID, n.Meta.RaftAddr)
	return err
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
	if (ev.Type == gossip.EventJoin || ev.Type == gossip.EventUpdate) && a.mayLead() {
		a.observeSharedSuspicions(now, ev.Node)
	}
}

// observeSharedSuspicions starts this agent's probes of the nodes that
// publishers' own memberlist probes suspect (gossip.Meta.Suspects): the
// leader decides removals, and one of 50 agents' probe rounds reaches a
// dead node sooner than the leader's own. Only the leader's probes decide a
// verdict.
//
// Only the agents that may lead act on them (mayLead): the leader, and
// the voters, one of which is elected when the leader dies and then acts
// on what its own probes found meanwhile (a suspicion of the dead leader
// above all: taken up only after the election, it added two probe
// intervals to a leader's death). Every agent probing every shared
// suspicion made one suspicion cost a probe from every agent, all aimed
// at the suspect at once: when the suspect was only overloaded (the node
// every other agent joins through, at a cluster's start), that burst
// failed it on most agents, and each of those went on probing it as a
// failed node. A new leader takes up the suspicions published at the time
// (observeAllSharedSuspicions).
func (a *Agent) observeSharedSuspicions(now time.Time, publishers ...gossip.Node) {
	for _, p := range publishers {
		for _, id := range p.Meta.Suspects {
			if id == a.cfg.NodeID {
				continue
			}
			if n, ok := a.gossip.Member(id); ok && (n.State == gossip.StateAlive || n.State == gossip.StateSuspect) {
				a.monitor.Observe(health.Suspect(id, now))
			}
		}
	}
}

// mayLead reports whether this agent leads or votes (by the state's
// record): the agents that may decide removals now or after the next
// election. An agent with no state yet (a cluster forming) only leads.
func (a *Agent) mayLead() bool {
	if a.raft.IsLeader() {
		return true
	}
	voter := false
	a.raft.Read(func(c *failover.Cluster) {
		if m, ok := c.Members[a.cfg.NodeID]; ok {
			voter = m.Voter
		}
	})
	return voter
}

// observeAllSharedSuspicions is observeSharedSuspicions for every member
// that gossip knows, for an agent that just became leader.
func (a *Agent) observeAllSharedSuspicions() {
	a.observeSharedSuspicions(time.Now(), a.gossip.Members()...)
}

// observeUnreachable takes a follower that did not answer the leader's
// raft AppendEntries (raftctl's unreachable handler: the connection was
// refused, reset or timed out) as a suspicion, which this agent's probes
// confirm or refute like gossip's. The leader heartbeats every follower
// every 100-200 ms, so a dead one is suspected at once, where gossip's
// suspicion waits for one of the agents' probe rounds to reach it (up to a
// few of its probe intervals on 50 agents). It only starts probes early:
// a false suspicion costs a few of them, never a removal.
func (a *Agent) observeUnreachable(raftID string) {
	if a.ctx.Err() != nil {
		return
	}
	if node, ok := unreachableMember(raftID, a.cfg.NodeID, a.gossip.Member); ok {
		a.monitor.Observe(health.Suspect(node, time.Now()))
	}
}

// unreachableMember decides (purely) which member a raft server that did
// not answer is, and whether to suspect it: only a member gossip still
// counts in (alive or suspect; a node gossip holds dead or gone is the
// detector's business already), and only the same process (an older raft
// ID is another incarnation of the node), never this agent itself.
func unreachableMember(raftID, self string, member func(id string) (gossip.Node, bool)) (string, bool) {
	if len(raftID) <= raftIDSuffixLen+1 {
		return "", false
	}
	node := raftID[:len(raftID)-raftIDSuffixLen-1]
	if node == self || !isRaftIDOf(raftID, node) {
		return "", false
	}
	n, ok := member(node)
	if !ok || n.Meta.RaftID != raftID || (n.State != gossip.StateAlive && n.State != gossip.StateSuspect) {
		return "", false
	}
	return node, true
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

// quorumLoop tracks whether this agent has seen a leader within the
// election timeout; without one it reports quorum lost.
//
// It wakes when raft tells it that the leader it knows changed
// (raftctl.SubscribeLeader: raft clears the leader it knows, and tells its
// observers, on every change of its own state, a leader's step-down
// included), when a leaderless spell reaches the election timeout, and,
// before this agent has a raft log, every quorumPoll. It used to look
// every quorumPoll on every agent: ten wake-ups a second, and an idle
// agent's CPU is mostly its wake-ups (docs/benchmarks.md, "Where an idle
// agent's CPU goes").
func (a *Agent) quorumLoop() {
	leaders, unsubscribe := a.raft.SubscribeLeader()
	defer unsubscribe()
	wake := time.NewTimer(quorumPoll)
	defer wake.Stop()
	var lastSeen time.Time // zero until this agent has a raft log
	knew := false          // whether a leader was known at the last look
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-leaders:
		case <-wake.C:
		}
		// Only an agent that is part of a cluster (it has a raft log) can
		// lose its quorum; a new agent waiting to be added has none yet,
		// and the first election after a bootstrap is not a loss.
		if a.raft.Stats().LastIndex == 0 {
			wake.Reset(quorumPoll)
			continue
		}
		known, now := a.knownLeader(), time.Now()
		if known || knew || lastSeen.IsZero() {
			lastSeen = now // a leader known until now
		}
		knew = known
		lost := now.Sub(lastSeen) > a.electionTimeout
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
		if !known && !lost {
			wake.Reset(lastSeen.Add(a.electionTimeout).Sub(now) + time.Millisecond)
		} else {
			wake.Stop() // raft tells of the next change
		}
	}
}

// quorumPoll is how often quorumLoop looks before this agent has a raft
// log (raft tells it of no change while it waits to be added).
const quorumPoll = 100 * time.Millisecond

// departedSweepInterval is how often the detector's records are checked
// against the cluster and gossip (forgetDepartedPeers): a record costs a
// probe every few intervals, and a node gossip just forgot waits at most
// this long.
const departedSweepInterval = 10 * time.Second

// forgetDepartedPeers drops the detector's records of nodes that are gone
// from the cluster (forgotten by the reaper or force-leave, or never
// registered) and from gossip (memberlist stopped gossiping about them).
// The detector probes a failed node every few probe intervals, so that it
// sees it come back; without this, every agent went on probing every
// forgotten node for as long as it ran, each a 150 ms wait on a machine
// that is gone.
func (a *Agent) forgetDepartedPeers() {
	members := a.ctrl.MemberState().Members
	inState := func(id string) bool { _, ok := members[id]; return ok }
	inGossip := func(id string) bool { _, ok := a.gossip.Member(id); return ok }
	now := time.Now()
	for _, id := range departedPeers(a.monitor.Snapshot(), inState, inGossip) {
		a.log.Debug("forgetting the health record of a node gone from the cluster and from gossip", "peer", id)
		a.monitor.Observe(health.Left(id, now))
	}
}

// departedPeers returns the nodes the detector tracks that neither the
// cluster state nor gossip knows. A node gossip knows but the state does
// not is kept: it may be joining.
func departedPeers(tracked []health.NodeHealth, inState, inGossip func(id string) bool) []string {
	var out []string
	for _, h := range tracked {
		if !inState(h.Node) && !inGossip(h.Node) {
			out = append(out, h.Node)
		}
	}
	return out
}
