package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
)

// A raft server the leader's AppendEntries do not reach is suspected only
// when it is a member gossip still counts in, in the same process.
func TestOnlyAMemberGossipCountsInIsSuspectedWhenRaftCannotReachIt(t *testing.T) {
	members := map[string]gossip.Node{
		"db-1": {ID: "db-1", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "db-1-0a1b2c3d"}},
		"db-2": {ID: "db-2", State: gossip.StateSuspect, Meta: gossip.Meta{RaftID: "db-2-00000002"}},
		"db-3": {ID: "db-3", State: gossip.StateDead, Meta: gossip.Meta{RaftID: "db-3-00000003"}},
		"db-4": {ID: "db-4", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "db-4-ffffffff"}},
		"me":   {ID: "me", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "me-00000005"}},
	}
	member := func(id string) (gossip.Node, bool) { n, ok := members[id]; return n, ok }
	for _, tc := range []struct {
		what, raftID string
		want         string
	}{
		{"an alive member", "db-1-0a1b2c3d", "db-1"},
		{"a member gossip suspects already", "db-2-00000002", "db-2"},
		{"a member gossip holds dead", "db-3-00000003", ""},
		{"an earlier process of a member (another raft ID)", "db-4-00000004", ""},
		{"a node gossip does not know", "db-9-00000009", ""},
		{"this agent itself", "me-00000005", ""},
		{"a raft ID Steward does not make", "db-1", ""},
		{"a suffix that is not hex", "db-1-zzzzzzzz", ""},
	} {
		got, ok := unreachableMember(tc.raftID, "me", member)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s (%s): suspected %q (%v), want %q", tc.what, tc.raftID, got, ok, tc.want)
		}
	}
}

// A suspicion one agent publishes is probed by the leader, which decides
// removals, and by the voters, one of which leads next, but by no other
// agent: every agent probing it at once is what failed an overloaded node
// on most agents at a cluster's start. A new leader takes up the
// suspicions published before it led.
func TestASharedSuspicionIsProbedByTheAgentsThatMayLeadAlone(t *testing.T) {
	leader, voters, others := startThreeVotersOfFive(t, "a")
	publisher, bystander := others[0], others[1]
	suspect, voter := voters[0], voters[1]
	suspicions := func(a *Agent) int {
		h, _ := a.monitor.Node(suspect.cfg.NodeID)
		return h.Suspicions
	}

	publisher.setSuspect(suspect.cfg.NodeID, true)
	for _, a := range []*Agent{leader, voter} {
		waitFor(t, 20*time.Second, "the leader and the other voter probing the published suspicion", func() error {
			if n := suspicions(a); n == 0 {
				return fmt.Errorf("%s has not suspected %s", a.cfg.NodeID, suspect.cfg.NodeID)
			}
			return nil
		})
	}
	waitFor(t, 20*time.Second, "the non-voter hearing the suspicion", func() error {
		n, ok := bystander.gossip.Member(publisher.cfg.NodeID)
		if !ok || !slices.Contains(n.Meta.Suspects, suspect.cfg.NodeID) {
			return fmt.Errorf("%s's metadata on %s: %+v", publisher.cfg.NodeID, bystander.cfg.NodeID, n.Meta)
		}
		return nil
	})
	if n := suspicions(bystander); n != 0 {
		t.Fatalf("non-voter %s suspected %s %d times on another agent's word", bystander.cfg.NodeID, suspect.cfg.NodeID, n)
	}

	bystander.observeAllSharedSuspicions()
	waitFor(t, 20*time.Second, "a new leader taking up the published suspicion", func() error {
		if n := suspicions(bystander); n == 0 {
			return fmt.Errorf("%s has not suspected %s", bystander.cfg.NodeID, suspect.cfg.NodeID)
		}
		return nil
	})
	// The suspect is alive: the probes clear it, and nobody fails it.
	for _, a := range []*Agent{leader, voter, bystander} {
		waitFor(t, 20*time.Second, "the suspect cleared", func() error {
			if h, _ := a.monitor.Node(suspect.cfg.NodeID); h.State != health.StateHealthy {
				return fmt.Errorf("%s holds %s %s", a.cfg.NodeID, suspect.cfg.NodeID, h.State)
			}
			return nil
		})
	}
}

// The detector forgets a node only once both the cluster and gossip have:
// a failed member is still probed (its return is a rejoin), a node gossip
// knows may be joining, and a forgotten one that memberlist stopped
// gossiping about is probed no more.
func TestOnlyNodesGoneFromTheClusterAndFromGossipAreForgottenByTheDetector(t *testing.T) {
	tracked := []health.NodeHealth{
		{Node: "failed-member", State: health.StateFailed},
		{Node: "joining", State: health.StateSuspect},
		{Node: "forgotten-gossip-still-dead", State: health.StateFailed},
		{Node: "forgotten", State: health.StateFailed},
		{Node: "healthy-member", State: health.StateHealthy},
	}
	state := map[string]bool{"failed-member": true, "healthy-member": true}
	gossipKnows := map[string]bool{"joining": true, "forgotten-gossip-still-dead": true, "healthy-member": true}
	got := departedPeers(tracked, func(id string) bool { return state[id] }, func(id string) bool { return gossipKnows[id] })
	if want := []string{"forgotten"}; !slices.Equal(got, want) {
		t.Fatalf("departed %q, want %q", got, want)
	}
}

// A node the agent probes that neither its cluster nor gossip knows (a
// member forgotten long ago) is dropped by the sweep, and its probes stop.
func TestTheSweepDropsTheRecordOfANodeNobodyKnows(t *testing.T) {
	cfg := testConfig(t, "a1", filepath.Join(t.TempDir(), "a1"))
	cfg.BootstrapExpect = 1
	a := startAgent(t, cfg)
	a.monitor.Observe(health.Dead("ghost", time.Time{}))
	waitFor(t, 10*time.Second, "the detector tracking the ghost", func() error {
		if _, ok := a.monitor.Node("ghost"); !ok {
			return fmt.Errorf("no record yet")
		}
		return nil
	})
	a.forgetDepartedPeers()
	waitFor(t, 10*time.Second, "the ghost's record dropped", func() error {
		if h, ok := a.monitor.Node("ghost"); ok {
			return fmt.Errorf("still tracked: %+v", h)
		}
		return nil
	})
}

// startThreeVotersOfFive starts five agents (IDs prefix1 to prefix5) with
// three voters, and returns the leader, the two other voters and the two
// non-voters once raft has them so.
func startThreeVotersOfFive(t *testing.T, prefix string) (leader *Agent, voters, others []*Agent) {
	t.Helper()
	dir := t.TempDir()
	var agents []*Agent
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("%s%d", prefix, i)
		cfg := testConfig(t, id, filepath.Join(dir, id))
		cfg.BootstrapExpect = 5
		cfg.Voters = 3
		if i > 1 {
			cfg.Join = []string{agents[0].GossipAddr()}
		}
		agents = append(agents, startAgent(t, cfg))
	}
	waitFor(t, 30*time.Second, "a leader, two other voters and two non-voters", func() error {
		leader, voters, others = nil, nil, nil
		for _, a := range agents {
			switch {
			case a.raft.IsLeader():
				leader = a
			case a.mayLead():
				voters = append(voters, a)
			default:
				others = append(others, a)
			}
		}
		if leader == nil || len(voters) != 2 || len(others) != 2 {
			return fmt.Errorf("leader %v, %d other voters, %d non-voters", leader != nil, len(voters), len(others))
		}
		return nil
	})
	return leader, voters, others
}

// A leader that loses its voters steps down; a non-voter loses its leader
// when its heartbeat timeout runs out. Both must report their quorum lost,
// though neither looks any more unless raft tells it that the leader it
// knows changed (a step-down included).
func TestTheLeaderAndANonvoterLeftWithoutVotersReportTheirQuorumLost(t *testing.T) {
	leader, voters, others := startThreeVotersOfFive(t, "q")
	for _, a := range append([]*Agent{leader}, others...) {
		if a.quorumLost.Load() {
			t.Fatalf("%s reports its quorum lost in a healthy cluster", a.cfg.NodeID)
		}
	}
	for _, v := range voters {
		if err := v.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range append([]*Agent{leader}, others...) {
		waitFor(t, 30*time.Second, a.cfg.NodeID+" reporting its quorum lost", func() error {
			if !a.quorumLost.Load() {
				leaderID, _ := a.raft.Leader()
				return fmt.Errorf("quorum not lost; it names leader %q", leaderID)
			}
			return nil
		})
	}
}
