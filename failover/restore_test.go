package failover

import (
	"fmt"
	"testing"
)

// Restoring a failed node's copies, how fast: the copies of a failed node
// are re-created from the surviving holders of each partition, and every
// copy occupies two nodes' migration slots (its source and its target). So
// with MaxMigrationsPerNode per node, one plan can start at most
// live×MaxMigrationsPerNode/2 copies, and at most MaxMigrations, and at
// most one per partition that lost a copy. The planner should reach that
// bound, not stop at the few nodes that happen to be the failed node's
// neighbours.

// missingAfterFailure counts the partitions that held id (each lost one copy).
func missingAfterFailure(c *Cluster, id string) int {
	n := 0
	for _, p := range c.Partitions {
		if p.Holds(id) {
			n++
		}
	}
	return n
}

// migrationBound is the most migrations one plan can start for missing
// partitions with lim on live nodes, of which targets may receive the
// copies (with as many zones as copies, only the failed node's zone may).
func migrationBound(missing, live, targets int, lim Limits) int {
	return min(missing, lim.MaxMigrations, live*lim.MaxMigrationsPerNode/2, targets*lim.MaxMigrationsPerNode)
}

func TestFirstPlanAfterFailureStartsAsManyCopiesAsTheLimitsAllow(t *testing.T) {
	cases := []struct {
		name  string
		parts int
		nodes []node
	}{
		{"20 nodes, 1024 partitions: every live node busy", 1024, nodes(20)},
		{"40 nodes, 2048 partitions: the cluster-wide limit", 2048, nodes(40)},
		{"30 nodes in 3 zones, 1024 partitions: the 9 others in the zone take the copies", 1024, zoned(30, "a", "b", "c")},
		{"100 nodes, 65536 partitions: the benchmark cluster", MaxPartitions, nodes(100)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := bootstrap(t, tc.parts, 3, tc.nodes)
			victim := tc.nodes[len(tc.nodes)/2].id
			missing := missingAfterFailure(c, victim)
			fail(t, c, 10, victim)
			lim := DefaultLimits()
			acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 11), Seed: 1, Limits: lim})

			targets := 0
			for _, n := range tc.nodes {
				if n.id != victim && n.zone == c.Members[victim].Zone {
					targets++
				}
			}
			want := migrationBound(missing, len(tc.nodes)-1, targets, lim)
			starts := 0
			busy := map[string]int{}
			for _, a := range acts {
				if a.Kind != ActionStartMigration {
					continue
				}
				starts++
				busy[a.Node]++
				busy[a.Source]++
				if a.Replaces != victim {
					t.Errorf("p%d: copy to %s replaces %q, want %s", a.Partition, a.Node, a.Replaces, victim)
				}
			}
			for n, b := range busy {
				if b > lim.MaxMigrationsPerNode {
					t.Errorf("%s takes part in %d migrations, limit %d", n, b, lim.MaxMigrationsPerNode)
				}
			}
			if starts != want {
				t.Fatalf("first plan starts %d copies of %d missing; the limits allow %d (%d nodes busy)", starts, missing, want, len(busy))
			}
		})
	}
}

// roundsAfterFailure fails the middle node of c and converges with the
// default limits, returning the copies that were missing, the copies made
// and the rounds.
func roundsAfterFailure(t testing.TB, c *Cluster) (missing, made, rounds int) {
	t.Helper()
	ids := c.MemberIDs()
	victim := ids[len(ids)/2]
	missing = missingAfterFailure(c, victim)
	fail(t, c, 10, victim)
	before := c.NextMigration
	rounds = Converge(c, PlanInput{Ages: AgesAt(c, 11), Seed: 1, Limits: DefaultLimits()}, 11)
	if rounds < 0 {
		t.Fatalf("no convergence after the failure of %s", victim)
	}
	return missing, int(c.NextMigration - before), rounds
}

func TestRestoringAFailedNodeTakesMissingOver32Rounds(t *testing.T) {
	c := bootstrap(t, 4096, 3, nodes(40))
	missing, made, rounds := roundsAfterFailure(t, c)
	// One round per 32 copies, plus at most two for what follows the last
	// copy (a last move where a node ended above its share, rebalancing
	// primaries).
	want := (missing+31)/32 + 2
	if rounds > want {
		t.Fatalf("%d rounds to restore %d copies, want at most %d", rounds, missing, want)
	}
	// The copies go where they keep the balance: at most one copy more
	// than the missing ones (a move out of a node that got one copy too
	// many at the very end, when the nodes below their share were busy).
	if made > missing+1 {
		t.Fatalf("%d copies made to restore %d", made, missing)
	}
	for _, p := range c.Partitions {
		if len(p.Holders()) != 3 {
			t.Fatalf("partition %d has holders %v after converging", p.ID, p.Holders())
		}
	}
	t.Logf("%d copies restored in %d rounds with %d copies made", missing, rounds, made)
}

// TestInitialTableSpreadsEachNodesPartners: a node's partitions have their
// other copies on many nodes, so that after its failure many nodes can
// serve as sources of the copies to re-create.
func TestInitialTableSpreadsEachNodesPartners(t *testing.T) {
	for _, n := range []int{10, 20, 100} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			c := bootstrap(t, 4096, 3, nodes(n))
			partners := map[string]map[string]bool{}
			for _, p := range c.Partitions {
				hs := p.Holders()
				for _, a := range hs {
					if partners[a] == nil {
						partners[a] = map[string]bool{}
					}
					for _, b := range hs {
						if a != b {
							partners[a][b] = true
						}
					}
				}
			}
			for id, ps := range partners {
				// 4096×3/n copies per node, two partners each: at these
				// sizes a node shares partitions with nearly every other.
				if want := (n - 1) * 3 / 4; len(ps) < want {
					t.Errorf("%s shares partitions with %d nodes, want at least %d", id, len(ps), want)
				}
			}
		})
	}
}

// BenchmarkRestoreAfterFailure converges the benchmark cluster after one
// failure with the default limits and reports the rounds it takes against
// the copies to re-create.
func BenchmarkRestoreAfterFailure(b *testing.B) {
	base := bigCluster(b)
	var missing, made, rounds int
	for b.Loop() {
		b.StopTimer()
		c := base.Clone()
		b.StartTimer()
		missing, made, rounds = roundsAfterFailure(b, c)
	}
	b.ReportMetric(float64(missing), "copies")
	b.ReportMetric(float64(made), "copies-made")
	b.ReportMetric(float64(rounds), "rounds")
	b.ReportMetric(float64(missing)/32, "copies/32")
}

// TestBusyPrimaryIsNotTheOnlySource: a primary whose migration slots are
// taken does not hold back the copies of the other partitions it leads: a
// replica with a free slot is the source instead.
func TestBusyPrimaryIsNotTheOnlySource(t *testing.T) {
	c := bootstrap(t, 2, 3, []node{{id: "a"}, {id: "b"}, {id: "c"}, {id: "d"}, {id: "e"}, {id: "x"}})
	// a leads both partitions; each lost its copy on x.
	c.Partitions[0] = Partition{ID: 0, Epoch: 1, Primary: "a", Replicas: []string{"b", "x"}}
	c.Partitions[1] = Partition{ID: 1, Epoch: 1, Primary: "a", Replicas: []string{"c", "x"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	setStatus(t, c, 10, "x", StatusFailed, nil)
	lim := DefaultLimits()
	lim.MaxMigrationsPerNode = 1
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 11), Seed: 1, Limits: lim})

	sources := map[int]string{}
	for _, a := range acts {
		if a.Kind == ActionStartMigration {
			sources[a.Partition] = a.Source
		}
	}
	if len(sources) != 2 || sources[0] != "a" || sources[1] != "c" {
		t.Fatalf("copies by partition from %v, want p0 from the primary a and p1 from its replica c (a is busy): %v", sources, acts)
	}
	mustApply(t, c, Command{Kind: CmdApplyActions, At: 11, Actions: acts})
}
