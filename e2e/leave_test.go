package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// Graceful leave scenarios.

// waitLeft waits until every survivor lists the departed node as left, no
// partition names it, every partition has rf copies and the departed node
// is out of raft.
func waitLeft(t *testing.T, survivors []*node, gone string, rf int) {
	t.Helper()
	eventually(t, 60*time.Second, gone+" left, its partitions re-created elsewhere", func() error {
		for _, s := range survivors {
			st, err := s.MemberStatus(gone)
			if err != nil {
				return err
			}
			if st != "left" {
				return fmt.Errorf("%s sees %s as %s", s.ID, gone, st)
			}
			servers, err := s.RaftServers()
			if err != nil {
				return err
			}
			for _, srv := range servers {
				if srv.NodeID == gone {
					return fmt.Errorf("%s's raft configuration still has %s", s.ID, gone)
				}
			}
		}
		pt, err := survivors[0].Partitions()
		if err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			holders := append([]string{p.Primary}, p.Replicas...)
			for _, h := range holders {
				if h == gone {
					return fmt.Errorf("partition %d still held by %s", p.ID, gone)
				}
			}
			if len(holders) != rf || p.Primary == "" {
				return fmt.Errorf("partition %d has holders %v", p.ID, holders)
			}
		}
		return nil
	})
}

func TestSIGTERMOfAFollowerLeavesGracefully(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "64")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	if err := victim.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v (want exit 0)", err)
	}
	if !strings.Contains(victim.Log(), "leaving the cluster: moving partitions away") {
		t.Fatalf("%s exited without the graceful leave:\n%s", victim.ID, victim.Tail(30))
	}
	if strings.Contains(victim.Log(), "no place for the remaining copies") || strings.Contains(victim.Log(), "leave timeout reached") {
		t.Fatalf("%s left before its copies were re-created elsewhere:\n%s", victim.ID, victim.Tail(30))
	}
	survivors := without(nodes, victim)
	waitLeft(t, survivors, victim.ID, 3)
	checkBalancedEventually(t, survivors[0], ids(survivors))
}

func TestSIGTERMOfTheLeaderLeavesGracefully(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "64")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	if err := leader.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v (want exit 0)", err)
	}
	if !strings.Contains(leader.Log(), "leaving the cluster: moving partitions away") {
		t.Fatalf("%s exited without the graceful leave:\n%s", leader.ID, leader.Tail(30))
	}
	if strings.Contains(leader.Log(), "no place for the remaining copies") || strings.Contains(leader.Log(), "leave timeout reached") {
		t.Fatalf("%s left before its copies were re-created elsewhere:\n%s", leader.ID, leader.Tail(30))
	}
	survivors := without(nodes, leader)
	if l := leaderOf(t, survivors); l == leader {
		t.Fatal("the departed leader is still named leader")
	}
	waitLeft(t, survivors, leader.ID, 3)
	checkBalancedEventually(t, survivors[0], ids(survivors))
}

func TestScaleDownToOneAndBackUpToFive(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "16", "-replication-factor", "2")
	// Leave one at a time, leader or not, down to one agent.
	alive := nodes
	for len(alive) > 1 {
		victim := alive[len(alive)-1]
		if err := victim.Stop(30 * time.Second); err != nil {
			t.Fatalf("stop %s: %v", victim.ID, err)
		}
		alive = without(alive, victim)
		rf := 2
		if len(alive) < 2 {
			rf = 1
		}
		waitLeft(t, alive, victim.ID, rf)
	}
	// Back up to five: new agents join the survivor.
	for i := 4; i <= 7; i++ {
		n := c.add(fmt.Sprintf("node%d", i))
		n.start("-join", alive[0].GossipAddr())
		alive = append(alive, n)
	}
	waitSameTable(t, alive, 60*time.Second)
	waitVoters(t, alive, 5)
	checkBalancedEventually(t, alive[0], ids(alive))
}

func ids(nodes []*node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

// checkBalancedEventually waits until the table is balanced within one over
// the given nodes.
func checkBalancedEventually(t *testing.T, n *node, nodeIDs []string) {
	t.Helper()
	eventually(t, 60*time.Second, "balanced table", func() error {
		pt, err := n.Partitions()
		if err != nil {
			return err
		}
		return balanced(pt, nodeIDs)
	})
}

// balanced is checkBalanced as an error.
func balanced(table localcluster.PartitionTable, nodeIDs []string) error {
	primaries, copies := map[string]int{}, map[string]int{}
	for _, id := range nodeIDs {
		primaries[id], copies[id] = 0, 0
	}
	for _, p := range table.Partitions {
		for _, h := range append([]string{p.Primary}, p.Replicas...) {
			if _, ok := copies[h]; !ok {
				return fmt.Errorf("partition %d held by unexpected node %q", p.ID, h)
			}
			copies[h]++
		}
		primaries[p.Primary]++
	}
	spread := func(m map[string]int) int {
		lo, hi := 1<<30, 0
		for _, v := range m {
			lo, hi = min(lo, v), max(hi, v)
		}
		return hi - lo
	}
	if spread(primaries) > 1 || spread(copies) > 1 {
		return fmt.Errorf("unbalanced: primaries %v copies %v", primaries, copies)
	}
	return nil
}
