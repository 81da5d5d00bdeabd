package e2e

import (
	"fmt"
	"testing"
	"time"
)

// Lease renewals relayed by the voters (raftctl/relay.go): a non-voter's
// renewals go through a voter that does not lead. These scenarios use six
// agents with three voters, so that there are relays to lose and cut.

// formRelayCluster forms six agents with three voters and 32 partitions,
// and watches their leases (until the test ends) until every partition is
// leased.
func formRelayCluster(t *testing.T, c *cluster) ([]*node, *leaseWatch) {
	t.Helper()
	nodes := formCluster(t, c, 6, "-partitions", "32", "-voters", "3")
	waitVoters(t, nodes, 3)
	w := watchLeases(nodes)
	t.Cleanup(w.stop)
	waitEveryPartitionLeased(t, w, 32)
	return nodes, w
}

// voterSplit returns the leader, the other voters and the non-voters of
// nodes, as the leader's raft configuration has them.
func voterSplit(t *testing.T, nodes []*node) (leader *node, voters, nonvoters []*node) {
	t.Helper()
	leader = leaderOf(t, nodes)
	servers, err := leader.RaftServers()
	if err != nil {
		t.Fatal(err)
	}
	voter := map[string]bool{}
	for _, s := range servers {
		voter[s.NodeID] = s.Voter
	}
	for _, n := range nodes {
		switch {
		case n == leader:
		case voter[n.ID]:
			voters = append(voters, n)
		default:
			nonvoters = append(nonvoters, n)
		}
	}
	if len(voters) != 2 || len(nonvoters) != 3 {
		t.Fatalf("want 2 other voters and 3 non-voters, have %d and %d", len(voters), len(nonvoters))
	}
	return leader, voters, nonvoters
}

// A non-voter cut off from the leader, but not from the voters that relay
// its renewals, must not keep its lease through them: the leader fails it
// and leases its partitions elsewhere, never to two apps at once, and the
// non-voter reports itself not ready, its raft log behind what the
// leader's grants say the leader had applied (on the longer heartbeat
// timeout of a non-voter it still names its leader for seconds).
func TestANonvoterCutOffFromTheLeaderLosesItsLeaseThoughItReachesTheRelays(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes, w := formRelayCluster(t, c)
	leader, _, nonvoters := voterSplit(t, nodes)

	victim := primaryHolder(t, nonvoters, nil)
	nf.Cut([]*node{victim}, []*node{leader})
	waitStaleReported(t, victim, 15*time.Second)
	waitFailedAndRemoved(t, without(nodes, victim), victim)
	waitEveryPartitionLeased(t, w, 32, victim)
	nf.Heal()
	eventually(t, 60*time.Second, "the non-voter back and ready", func() error {
		if st, err := leader.MemberStatus(victim.ID); err != nil || st != "alive" {
			return fmt.Errorf("the leader sees %s as %q (%v)", victim.ID, st, err)
		}
		st, err := victim.Status()
		if err != nil {
			return err
		}
		if !st.Ready {
			return fmt.Errorf("%s not ready: %s", victim.ID, st.NotReady)
		}
		return nil
	})
	if o := w.overlaps(); len(o) > 0 {
		t.Fatalf("two nodes could serve one partition as primary at once:\n%v", o)
	}
}

// When a relay dies, the non-voters it relayed for ask the leader
// directly: their apps keep serving their primaries without a gap a
// client would notice.
func TestNonvotersKeepTheirLeasesWhenARelayIsKilled(t *testing.T) {
	nodes, w := formRelayCluster(t, newCluster(t))
	_, voters, nonvoters := voterSplit(t, nodes)

	relay, relayed := busiestRelay(t, voters, nonvoters)
	for _, n := range relayed {
		t.Logf("killing %s, the relay of %s", relay.ID, n.ID)
	}
	killed := time.Now()
	relay.Kill()
	waitFailedAndRemoved(t, without(nodes, relay), relay)
	waitVoters(t, without(nodes, relay), 3)
	// Watch the leases for longer than an agent keeps the configuration
	// it chose its relay from (5 s): without the fallback, a non-voter
	// would go on asking the dead relay until it reread it.
	watched := killed.Add(7 * time.Second)
	time.Sleep(time.Until(watched)) // an observation window, not a synchronisation

	if o := w.overlaps(); len(o) > 0 {
		t.Fatalf("two nodes could serve one partition as primary at once:\n%v", o)
	}
	// Each relayed non-voter's lease after the kill: without the fallback
	// to the leader it went without a lease until it reread the
	// configuration (up to 5 s, and at least until the dead voter left
	// it); with it, it loses one renewal at most, which the lease
	// (450 ms, renewed every 150 ms) outlasts.
	for _, n := range relayed {
		if gap := w.longestGap(n.ID, killed, watched); gap > time.Second {
			t.Errorf("%s's app had no lease for %s after the relay %s was killed", n.ID, gap, relay.ID)
		}
	}
}

// busiestRelay is the voter that relays the renewals of the most
// non-voters, and those non-voters, as their /v1/status shows once every
// non-voter renews through a relay.
func busiestRelay(t *testing.T, voters, nonvoters []*node) (*node, []*node) {
	t.Helper()
	byRaftID := map[string]*node{}
	servers, err := voters[0].RaftServers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		for _, v := range voters {
			if v.ID == s.NodeID {
				byRaftID[s.RaftID] = v
			}
		}
	}
	relayed := map[*node][]*node{}
	eventually(t, 20*time.Second, "every non-voter renewing through a relay", func() error {
		clear(relayed)
		for _, n := range nonvoters {
			st, err := n.Status()
			if err != nil {
				return err
			}
			r, ok := byRaftID[st.LeaseRelay]
			if !ok {
				return fmt.Errorf("%s's last grant came through %q, not a voter that does not lead", n.ID, st.LeaseRelay)
			}
			relayed[r] = append(relayed[r], n)
		}
		return nil
	})
	var busiest *node
	for r, ns := range relayed {
		if busiest == nil || len(ns) > len(relayed[busiest]) {
			busiest = r
		}
	}
	return busiest, relayed[busiest]
}
