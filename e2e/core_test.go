package e2e

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// formCluster starts n agents with -bootstrap-expect n, all joining the
// first, and waits until every one of them serves the same table.
func formCluster(t *testing.T, c *cluster, n int, extra ...string) []*node {
	t.Helper()
	var nodes []*node
	for i := 1; i <= n; i++ {
		nodes = append(nodes, c.add(fmt.Sprintf("node%d", i), extra...))
	}
	for _, nd := range nodes {
		nd.start("-bootstrap-expect", fmt.Sprint(n), "-join", nodes[0].GossipAddr())
	}
	waitSameTable(t, nodes, 60*time.Second)
	return nodes
}

// waitSameTable waits until every node serves one identical, bootstrapped
// partition table and they agree on one leader, and returns the table.
func waitSameTable(t *testing.T, nodes []*node, timeout time.Duration) localcluster.PartitionTable {
	t.Helper()
	var table localcluster.PartitionTable
	eventually(t, timeout, "identical partition tables and one leader on all agents", func() (err error) {
		table, err = localcluster.SameTableAndLeader(agents(nodes))
		return err
	})
	return table
}

// checkBalanced asserts that primaries and copies per node differ by at most
// one over the given nodes and that no node holds two copies of a partition.
func checkBalanced(t *testing.T, table localcluster.PartitionTable, nodeIDs []string) {
	t.Helper()
	primaries, copies := map[string]int{}, map[string]int{}
	for _, id := range nodeIDs {
		primaries[id], copies[id] = 0, 0
	}
	for _, p := range table.Partitions {
		holders := append([]string{p.Primary}, p.Replicas...)
		seen := map[string]bool{}
		for _, h := range holders {
			if seen[h] {
				t.Fatalf("partition %d: %s holds two copies", p.ID, h)
			}
			seen[h] = true
			if _, ok := copies[h]; !ok {
				t.Fatalf("partition %d held by unexpected node %q", p.ID, h)
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
		t.Fatalf("unbalanced: primaries %v copies %v", primaries, copies)
	}
}

func TestThreeAgentsFormOneClusterThenAFourthJoinsAndAllRestart(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "64", "-replication-factor", "3")

	// One leader, three voters, three alive members, one balanced table.
	eventually(t, 30*time.Second, "three alive voters", func() error {
		ms, err := nodes[0].Members()
		if err != nil {
			return err
		}
		if len(ms) != 3 {
			return fmt.Errorf("%d members", len(ms))
		}
		for _, m := range ms {
			if m.Status != "alive" || !m.Voter {
				return fmt.Errorf("member %+v", m)
			}
		}
		return nil
	})
	leaders := 0
	for _, nd := range nodes {
		st, err := nd.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.RaftState == "leader" {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d agents say they lead", leaders)
	}
	table := waitSameTable(t, nodes, 10*time.Second)
	if table.Settings.Partitions != 64 || len(table.Partitions) != 64 || table.Settings.ReplicationFactor != 3 {
		t.Fatalf("settings %+v with %d partitions", table.Settings, len(table.Partitions))
	}
	checkBalanced(t, table, []string{"node1", "node2", "node3"})

	// A fourth agent joins with -join and becomes an alive non-voter (with
	// four agents the voter target is three).
	n4 := c.add("node4")
	n4.start("-join", nodes[1].GossipAddr())
	all := append(append([]*node{}, nodes...), n4)
	eventually(t, 30*time.Second, "node4 alive non-voter on every agent", func() error {
		for _, nd := range all {
			ms, err := nd.Members()
			if err != nil {
				return err
			}
			var found bool
			for _, m := range ms {
				if m.ID == "node4" {
					found = true
					if m.Status != "alive" || m.Voter {
						return fmt.Errorf("%s sees node4 as %+v", nd.ID, m)
					}
				}
			}
			if !found {
				return fmt.Errorf("%s does not list node4", nd.ID)
			}
		}
		return nil
	})
	// node4 gets its share; then the table is at rest.
	checkBalancedEventually(t, nodes[0], ids(all))
	before := waitSameTable(t, all, 30*time.Second)

	// Stop everyone at once (SIGKILL: a power cut, not a leave, which
	// would move partitions away), restart with the same data dirs: the
	// same table comes back and nobody bootstraps again.
	for _, nd := range all {
		nd.Kill()
	}
	for _, nd := range nodes {
		nd.start("-bootstrap-expect", "3", "-join", nodes[0].GossipAddr())
	}
	n4.start("-join", nodes[1].GossipAddr())
	after := waitSameTable(t, all, 60*time.Second)
	if !reflect.DeepEqual(before.Partitions, after.Partitions) {
		t.Fatalf("the partition table changed across the restart")
	}
	for _, nd := range all {
		if strings.Contains(nd.Log(), "bootstrapped raft") {
			t.Fatalf("%s bootstrapped again after a restart", nd.ID)
		}
	}
	ms, err := nodes[2].Members()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID+"="+m.Status)
	}
	sort.Strings(ids)
	if strings.Join(ids, ",") != "node1=alive,node2=alive,node3=alive,node4=alive" {
		t.Fatalf("members after restart: %v", ids)
	}
}
