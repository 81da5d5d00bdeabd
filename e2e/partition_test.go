package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Partition scenarios: nodes cut off by network faults (netfault_test.go),
// then healed, with no process restarted.

// incarnationOf returns id's incarnation as n's cluster state has it.
func incarnationOf(t testing.TB, n *node, id string) uint64 {
	t.Helper()
	ms, err := n.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Incarnation
		}
	}
	t.Fatalf("%s does not list %s", n.ID, id)
	return 0
}

// waitRejoined waits until every node lists each victim once, alive, with
// an incarnation above the one it had before the fault, and the raft
// configuration on every node has each victim as a server.
func waitRejoined(t *testing.T, nodes []*node, before map[string]uint64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "victims back alive in a new incarnation and in raft everywhere", func() error {
		return rejoinedError(nodes, before)
	})
}

// rejoinedError is waitRejoined's condition: nil once every node lists
// each victim (ID to incarnation before the fault) once, alive, in a
// higher incarnation, and has it in its raft configuration.
func rejoinedError(nodes []*node, before map[string]uint64) error {
	for _, n := range nodes {
		ms, err := n.Members()
		if err != nil {
			return err
		}
		for id, inc := range before {
			entries := 0
			for _, m := range ms {
				if m.ID != id {
					continue
				}
				entries++
				if m.Status != "alive" || m.Incarnation <= inc {
					return fmt.Errorf("%s sees %+v (incarnation before the cut: %d)", n.ID, m, inc)
				}
			}
			if entries != 1 {
				return fmt.Errorf("%s lists %s %d times", n.ID, id, entries)
			}
		}
		servers, err := n.RaftServers()
		if err != nil {
			return err
		}
		for id := range before {
			found := 0
			for _, s := range servers {
				if s.NodeID == id {
					found++
				}
			}
			if found != 1 {
				return fmt.Errorf("%s's raft configuration has %s %d times: %+v", n.ID, id, found, servers)
			}
		}
	}
	return nil
}

// checkNoneExited fails the test if any agent process ended: a heal must
// need no restart.
func checkNoneExited(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		select {
		case <-n.Exited():
			t.Fatalf("%s exited: %s", n.ID, n.Tail(5))
		default:
		}
	}
}

// TestACutOffNodeIsRemovedThenRejoinsOnItsOwnAfterTheHeal: one node (agent
// and app) of five is cut off for 10 s. The majority fails it, takes it out
// of raft and moves its partitions away; after the heal it comes back on
// its own, as a rejoin: a new incarnation, one member entry, a raft server
// again, its app told node.rejoin and to release its stale copies, its
// share given back, every voter restored, and every acknowledged write
// readable through every node. Nothing is restarted.
func TestACutOffNodeIsRemovedThenRejoinsOnItsOwnAfterTheHeal(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	apps := formAppCluster(t, c, 5, "-partitions", "32", "-replication-factor", "3")
	nodes := plainNodes(apps)
	waitVoters(t, nodes, 5)
	w := &writer{acked: map[string]string{}}
	w.run(context.Background(), func() []*appNode { return apps }, "before", 60)
	leader := leaderOf(t, nodes)
	var victim *appNode
	for _, a := range apps {
		if a.node != leader {
			victim = a
			break
		}
	}
	survivors := appWithout(apps, victim)
	before := map[string]uint64{victim.ID: incarnationOf(t, leader, victim.ID)}
	raftID := raftIDOf(t, leader, victim.ID)
	releasesBefore := victim.proxy.Seen("partition.release")

	cutAt := time.Now()
	nf.Isolate(victim.node)
	waitFailedAndRemoved(t, plainNodes(survivors), victim.node)
	checkNoPartitionOn(t, leader, victim.ID)
	w.run(context.Background(), func() []*appNode { return survivors }, "while-cut", 40)
	time.Sleep(time.Until(cutAt.Add(10 * time.Second))) // the length of the fault
	nf.Heal()
	healedAt := time.Now()

	waitRejoined(t, nodes, before, 60*time.Second)
	waitSameTable(t, nodes, 60*time.Second)
	t.Logf("heal to rejoined (alive everywhere, in raft, one table): %s", time.Since(healedAt).Round(10*time.Millisecond))
	eventually(t, 30*time.Second, "the app hears node.rejoin and releases its stale copies", func() error {
		if victim.proxy.Seen("node.rejoin") == 0 {
			return fmt.Errorf("no node.rejoin yet")
		}
		if victim.proxy.Seen("partition.release") == releasesBefore {
			return fmt.Errorf("no partition.release yet")
		}
		return nil
	})
	// Back under its old raft ID, first as a non-voter (it may vote only
	// once caught up), then promoted.
	if id := raftIDOf(t, leader, victim.ID); id != raftID {
		t.Fatalf("%s came back as raft server %s, was %s: a heal is no new server", victim.ID, id, raftID)
	}
	if !logHasLine(leader.Log(), "added to raft as non-voter", "member="+victim.ID) {
		t.Fatalf("the leader did not add %s back as a non-voter", victim.ID)
	}
	waitVoters(t, nodes, 5)
	waitSettled(t, apps, 3)
	checkBalancedEventually(t, leader, ids(nodes))
	checkAllReadable(t, apps, w.snapshot())
	checkNoneExited(t, nodes)
}

// TestANodeTheLeaderCannotReachOverTCPIsFailedThoughGossipSeesItAlive: a
// follower is cut off for TCP only, so memberlist's UDP probes still reach
// it and gossip never suspects it; but raft, its lease renewals and the
// agents' probes (all TCP) do not get through, so its app could serve
// nothing. The leader's raft heartbeats to it fail, which makes the leader
// suspect it; its probes confirm, and it is failed and its partitions move
// as for a crash. After the heal it comes back as a rejoin.
func TestANodeTheLeaderCannotReachOverTCPIsFailedThoughGossipSeesItAlive(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes := formCluster(t, c, 3, "-partitions", "16", "-replication-factor", "2")
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	survivors := without(nodes, victim)
	before := map[string]uint64{victim.ID: incarnationOf(t, leader, victim.ID)}

	nf.IsolateTCP(victim)
	waitFailedAndRemoved(t, survivors, victim)
	checkNoPartitionOn(t, leader, victim.ID)
	if !logHasLine(leader.Log(), "health verdict", "peer="+victim.ID, "verdict=failed") {
		t.Fatalf("the leader failed %s without a verdict of its own probes", victim.ID)
	}
	if logHasLine(leader.Log(), "Suspect "+victim.ID) {
		t.Logf("memberlist suspected %s too: the cut let too little UDP through for this test to tell the two signals apart", victim.ID)
	}

	nf.Heal()
	waitRejoined(t, nodes, before, 60*time.Second)
	waitSameTable(t, nodes, 60*time.Second)
	checkNoneExited(t, nodes)
}

// logHasLine reports whether one line of log holds every part.
func logHasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// memberStatuses returns every member's status as n's state has it.
func memberStatuses(n *node) (map[string]string, error) {
	ms, err := n.Members()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms {
		out[m.ID] = m.Status
	}
	return out, nil
}

// checkMinorityChangedNothing asserts that each node of a cut-off minority
// still answers, still holds every member in service and still has all of
// them in its raft configuration: it removed nobody.
func checkMinorityChangedNothing(t *testing.T, minority []*node, all []*node) {
	t.Helper()
	for _, n := range minority {
		st, err := memberStatuses(n)
		if err != nil {
			t.Fatalf("the cut-off %s no longer answers: %v", n.ID, err)
		}
		for _, m := range all {
			if s := st[m.ID]; s != "alive" && s != "suspect" {
				t.Fatalf("the cut-off %s changed %s to %q: a minority must change nothing", n.ID, m.ID, s)
			}
		}
		servers, err := n.RaftServers()
		if err != nil {
			t.Fatal(err)
		}
		if len(servers) != len(all) {
			t.Fatalf("the cut-off %s's raft configuration changed: %+v", n.ID, servers)
		}
	}
}

func TestACutOffMinorityWithTheLeaderRemovesNobodyAndBothComeBack(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	minority := []*node{leader, without(nodes, leader)[0]}
	majority := without(nodes, minority...)
	before := map[string]uint64{}
	for _, n := range minority {
		before[n.ID] = incarnationOf(t, leader, n.ID)
	}

	cutAt := time.Now()
	nf.Isolate(minority...)
	// The majority elects a leader of its own, fails and removes both.
	newLeader := leaderOf(t, majority)
	waitFailedAndRemoved(t, majority, minority...)
	checkNoPartitionOn(t, newLeader, minority[0].ID, minority[1].ID)
	checkMinorityChangedNothing(t, minority, nodes)
	time.Sleep(time.Until(cutAt.Add(12 * time.Second))) // the length of the fault
	checkMinorityChangedNothing(t, minority, nodes)
	for _, n := range minority {
		if st, err := n.Status(); err != nil || st.RaftState == "leader" || st.Ready {
			t.Fatalf("the cut-off %s after 12 s: %+v, %v (it must not lead nor say it is ready)", n.ID, st, err)
		}
	}
	nf.Heal()

	waitRejoined(t, nodes, before, 60*time.Second)
	waitSameTable(t, nodes, 60*time.Second)
	waitVoters(t, nodes, 5)
	checkBalancedEventually(t, newLeader, ids(nodes))
	checkNoneExited(t, nodes)
}

func TestASuspectedVoterDemotesNobody(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]

	// Cuts and pauses shorter than the detection window (three failed
	// probes 200 ms apart on top of gossip's suspicion): gossip suspects
	// the voter, nobody may conclude anything from it.
	for i := 0; i < 4; i++ {
		nf.Isolate(victim)
		time.Sleep(400 * time.Millisecond) // the length of the cut
		nf.Heal()
		time.Sleep(time.Second) // time to refute before the next fault
		victim.Signal(syscall.SIGSTOP)
		time.Sleep(300 * time.Millisecond) // the pause itself
		victim.Signal(syscall.SIGCONT)
		time.Sleep(time.Second)
	}
	waitAliveEverywhere(t, nodes, victim)
	suspected := false
	for _, n := range without(nodes, victim) {
		suspected = suspected || strings.Contains(n.Log(), "type=suspect peer="+victim.ID)
	}
	if !suspected {
		t.Fatalf("nobody suspected %s: the faults were too short to test anything", victim.ID)
	}
	for _, n := range nodes {
		for _, bad := range []string{"demoted to non-voter", "member failed", "removed failed member"} {
			if strings.Contains(n.Log(), bad) {
				t.Fatalf("%s logged %q after suspicions only", n.ID, bad)
			}
		}
	}
	waitVoters(t, nodes, 5)
}
