package control

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/raftctl"
)

// Bootstrapping a new cluster. Every agent of the first cluster runs a
// Bootstrapper (the agent calls Step every 100 ms) and they all compute
// the same configuration: the BootstrapExpect agents with the smallest
// node IDs among those gossip shows, the first -voters of them as voters
// and the rest as non-voters. Raft accepts
// identical bootstraps on every node; an agent outside that set does not
// bootstrap and is added by the leader later. Before bootstrapping, the
// agent asks each peer whether it already has a raft log (peerInCluster).
// The first leader then creates the partition table (bootstrapTable).

// bootstrapStableFor is how long the voters of the view (the first agents
// by ID) must stay the same, in every moment all expected agents are seen,
// before this agent bootstraps with it. Agents that start together see
// each other within a few gossip rounds; waiting for a stable view makes
// every one of them propose the same configuration.
const bootstrapStableFor = 500 * time.Millisecond

// bootstrapView is the configuration a first cluster would have, given
// the members gossip shows: ok is false while fewer than expect agents are
// ready (alive, with raft's ID and address published).
type bootstrapView struct {
	ok bool
	// servers are the first expect agents by node ID, the first of them
	// voters (see bootstrapViewOf).
	servers []raftctl.Server
	// nodes are their gossip nodes, in the same order.
	nodes []gossip.Node
	// key names the view's voters, to tell when they changed.
	key string
	// includesSelf: this agent is one of them; selfVoter: as a voter.
	includesSelf, selfVoter bool
}

// bootstrapViewOf decides (purely) the configuration of a first cluster:
// the first expect agents by node ID, of which the first
// targetVoters(voters, expect) vote (all of them when voters < 1) and the
// rest join as non-voters. Fifty agents started together used to
// bootstrap fifty voters: every election then needed 26 votes from busy
// processes, and the leader demoted 45 of them right after.
func bootstrapViewOf(members []gossip.Node, expect, voters int, self string) bootstrapView {
	var ready []gossip.Node
	for _, n := range members {
		if n.State == gossip.StateAlive && n.Meta.RaftID != "" && n.Meta.RaftAddr != "" {
			ready = append(ready, n)
		}
	}
	if expect < 1 || len(ready) < expect {
		return bootstrapView{}
	}
	nVoters := expect
	if voters >= 1 {
		nVoters = targetVoters(voters, expect)
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].ID < ready[j].ID })
	v := bootstrapView{ok: true, nodes: ready[:expect]}
	for i, n := range v.nodes {
		if i < nVoters {
			v.key += n.ID + "=" + n.Meta.RaftID + ";"
		}
		if n.ID == self {
			v.includesSelf, v.selfVoter = true, i < nVoters
		}
		v.servers = append(v.servers, raftctl.Server{ID: n.Meta.RaftID, Address: n.Meta.RaftAddr, Voter: i < nVoters})
	}
	return v
}

// voterNodes are the gossip nodes of the view's voters.
func (v bootstrapView) voterNodes() []gossip.Node {
	var out []gossip.Node
	for i, s := range v.servers {
		if s.Voter {
			out = append(out, v.nodes[i])
		}
	}
	return out
}

// Bootstrapper is one agent's attempt at bootstrapping raft.
type Bootstrapper struct {
	c        *Controller
	lastView string
	since    time.Duration // clock.Elapsed when lastView was first seen
}

// NewBootstrapper starts an attempt; the agent runs one only when it has
// BootstrapExpect > 0 and no raft state.
func (c *Controller) NewBootstrapper() *Bootstrapper { return &Bootstrapper{c: c} }

// Step looks once: done is true when there is nothing more to do (raft
// has state or knows a leader, this agent bootstrapped, is not among the
// first agents, or a peer already has a log).
func (b *Bootstrapper) Step(ctx context.Context) (done bool) {
	c := b.c
	if c.raft.HasState() || c.knownLeader() {
		return true
	}
	v := bootstrapViewOf(c.members.Members(), c.cfg.BootstrapExpect, c.cfg.Voters, c.cfg.NodeID)
	if !v.ok {
		// A moment in which some of the expected agents look down (a
		// busy machine's suspicions) does not restart the wait: the
		// voters must not change, and all agents must be there when it
		// bootstraps. With 50 agents, a wait for 500 ms without any
		// suspicion among them never ended on a loaded machine.
		return false
	}
	now := c.clock.Elapsed()
	if v.key != b.lastView {
		b.lastView, b.since = v.key, now
		return false
	}
	if now-b.since < bootstrapStableFor {
		return false
	}
	if !v.includesSelf {
		c.log.Info("not among the first agents; waiting to be added", "expect", c.cfg.BootstrapExpect)
		return true
	}
	if !v.selfVoter {
		// A non-voter never campaigns: had it bootstrapped, the voters
		// would see its raft log (peerInCluster) and wait for a leader
		// that nobody could become. It waits for the leader to replicate
		// the configuration, which names it already.
		c.log.Info("among the first agents as a non-voter; waiting for the leader", "expect", c.cfg.BootstrapExpect)
		return true
	}
	// Only the voters of the view can have bootstrapped it (non-voters
	// never do): asking the other agents too, one 2 s ping after the
	// other, held 50 agents' bootstrap up for 40 s on a busy machine.
	if peer, ok := c.peerInCluster(ctx, v.voterNodes()); ok {
		c.log.Info("a peer already has a raft log; not bootstrapping (its leader adds this agent)", "peer", peer)
		return true
	}
	if err := c.raft.Bootstrap(v.servers); err != nil {
		c.log.Error("bootstrap failed", "error", err)
		return false
	}
	c.log.Info("bootstrapped raft", "voters", len(v.servers), "view", v.key)
	return true
}

// knownLeader reports whether raft knows a leader (then this agent is
// already part of a cluster).
func (c *Controller) knownLeader() bool {
	id, _ := c.raft.Leader()
	return id != ""
}

// peerInCluster asks the peers, over their raft ports, whether any of them
// already has a raft log. If one has, this agent does not bootstrap: either
// that peer bootstrapped the very same configuration a moment earlier (its
// election needs this agent's vote, which a server without a configuration
// grants, and its leader then replicates the configuration here), or it
// belongs to an existing cluster, beside which a second bootstrap would
// split the cluster.
func (c *Controller) peerInCluster(ctx context.Context, peers []gossip.Node) (string, bool) {
	for _, n := range peers {
		if n.ID == c.cfg.NodeID || n.Meta.RaftAddr == "" {
			continue
		}
		if st, err := c.peerStatus(ctx, n.Meta.RaftID, n.Meta.RaftAddr); err == nil && st.LastIndex > 0 {
			return n.ID, true
		}
	}
	return "", false
}

// peerPingTimeout bounds one ping of a peer's raft port for its status.
const peerPingTimeout = 2 * time.Second

// peerStatus asks the raft server id at a raft address how far its log
// and state machine are, within peerPingTimeout; another server answering
// at that address is an error.
func (c *Controller) peerStatus(ctx context.Context, id, addr string) (raftctl.PeerStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, peerPingTimeout)
	defer cancel()
	return c.raft.PingServer(ctx, id, addr)
}

// bootstrapTable applies the bootstrap command: settings and the partition
// table over the agents of the raft configuration.
func (c *Controller) bootstrapTable(ctx context.Context) error {
	if c.cfg.BootstrapExpect == 0 {
		return nil
	}
	servers, err := c.raft.Configuration()
	if err != nil {
		return err
	}
	byRaftID := c.gossipByRaftID()
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
	settings := failover.Settings{Partitions: c.cfg.Partitions, ReplicationFactor: c.cfg.ReplicationFactor}
	// The table travels in the entry: every agent applies the same layout,
	// whatever version of InitialTable it runs.
	byID := make(map[string]failover.Member, len(members))
	for _, m := range members {
		m.Status = failover.StatusAlive
		byID[m.ID] = m
	}
	table := failover.InitialTable(settings, byID)
	_, err = c.Apply(ctx, failover.Command{Kind: failover.CmdBootstrap, At: c.clock.Now().UnixNano(), Settings: &settings, Members: members, Table: table})
	if errors.Is(err, failover.ErrAlreadyBootstrapped) {
		return nil
	}
	if err == nil {
		c.log.Info("partition table created", "partitions", settings.Partitions, "replication_factor", settings.ReplicationFactor, "members", len(members))
	}
	return err
}
