package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// TestFailoverPromotesWithHigherEpochsAndAJoinMovesTheOptimum: 5 agents,
// 64 partitions, RF 3. Killing the node with the most primaries gives every
// partition it led a live primary at a higher epoch and restores RF 3 on
// the 4 survivors; a 6th agent then gets its share, balanced within one,
// and every copy that moved went to it (no copy moved between old nodes:
// the optimum).
func TestFailoverPromotesWithHigherEpochsAndAJoinMovesTheOptimum(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "64", "-replication-factor", "3")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	table, err := leader.Partitions()
	if err != nil {
		t.Fatal(err)
	}
	// The node with the most primaries (the leader's node is fine too).
	count := map[string]int{}
	for _, p := range table.Partitions {
		count[p.Primary]++
	}
	victim := nodes[0]
	for _, n := range nodes {
		if count[n.ID] > count[victim.ID] {
			victim = n
		}
	}
	led := map[int]uint64{}
	for _, p := range table.Partitions {
		if p.Primary == victim.ID {
			led[p.ID] = p.Epoch
		}
	}
	victim.Kill()
	survivors := without(nodes, victim)
	waitFailedAndRemoved(t, survivors, victim)

	var after localcluster.PartitionTable
	eventually(t, 60*time.Second, "RF 3 on the survivors, new primaries at higher epochs", func() error {
		pt, err := survivors[0].Partitions()
		if err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			holders := append([]string{p.Primary}, p.Replicas...)
			if len(holders) != 3 {
				return fmt.Errorf("partition %d has %d copies", p.ID, len(holders))
			}
			for _, h := range holders {
				if h == victim.ID {
					return fmt.Errorf("partition %d still held by %s", p.ID, h)
				}
			}
			if old, ok := led[p.ID]; ok && p.Epoch <= old {
				return fmt.Errorf("partition %d: epoch %d not above %d", p.ID, p.Epoch, old)
			}
		}
		after = pt
		return nil
	})
	if err := balanced(after, ids(survivors)); err != nil {
		// Restoring RF may leave the table balanced already; if not, wait
		// for the rebalance to finish.
		checkBalancedEventually(t, survivors[0], ids(survivors))
	}
	before := waitSameTable(t, survivors, 30*time.Second)

	// A sixth agent joins.
	n6 := c.add("node6")
	n6.start("-join", survivors[0].GossipAddr())
	all := append(append([]*node{}, survivors...), n6)
	checkBalancedEventually(t, survivors[0], ids(all))
	final := waitSameTable(t, all, 30*time.Second)

	moved, toNew := 0, 0
	for i, p := range final.Partitions {
		old := map[string]bool{before.Partitions[i].Primary: true}
		for _, r := range before.Partitions[i].Replicas {
			old[r] = true
		}
		for _, h := range append([]string{p.Primary}, p.Replicas...) {
			if !old[h] {
				moved++
				if h == "node6" {
					toNew++
				}
			}
		}
	}
	got := 0
	for _, p := range final.Partitions {
		for _, h := range append([]string{p.Primary}, p.Replicas...) {
			if h == "node6" {
				got++
			}
		}
	}
	// 192 copies over 5 nodes: node6's share is floor or ceil of 38.4.
	if got < 38 || got > 39 {
		t.Fatalf("node6 holds %d copies, want its share of 38 or 39", got)
	}
	if moved != toNew || moved != got {
		t.Fatalf("%d copies moved, %d of them to node6 which holds %d: a join must move exactly the copies the new node takes", moved, toNew, got)
	}
}
