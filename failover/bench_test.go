package failover

import (
	"sort"
	"testing"
	"time"
)

// The benchmark cluster of the issue: 100 nodes, 65,536 partitions, RF 3.
func bigCluster(b *testing.B) *Cluster {
	b.Helper()
	return bootstrap(b, MaxPartitions, 3, nodes(100))
}

func BenchmarkPlan(b *testing.B) {
	c := bigCluster(b)
	b.Run("from_scratch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 2), Seed: 1, Limits: DefaultLimits()}); len(a) != 0 {
				b.Fatalf("bootstrap table plans %d actions", len(a))
			}
		}
	})
	failed := c.Clone()
	setStatus(b, failed, 3, "n50", StatusFailed, PlanFailure(failed, "n50", 1))
	b.Run("after_one_failure", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			n = len(Plan(PlanInput{Cluster: failed, Ages: AgesAt(failed, 4), Seed: 1, Limits: DefaultLimits()}))
		}
		b.ReportMetric(float64(n), "actions")
	})
	b.Run("failure_promotions", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			n = len(PlanFailure(c, "n50", 1))
		}
		b.ReportMetric(float64(n), "promotions")
	})
}

// placement is a full assignment: the holders of each partition.
type placement [][]string

func placementOf(c *Cluster) placement {
	out := make(placement, len(c.Partitions))
	for i, p := range c.Partitions {
		out[i] = p.Holders()
	}
	return out
}

// moved counts the copies in after that were not in before (each one is a
// copy made over the network).
func moved(before, after placement) int {
	n := 0
	for i := range after {
		for _, h := range after[i] {
			if indexOf(before[i], h) < 0 {
				n++
			}
		}
	}
	return n
}

func maxOverMean(pl placement, nodeCount int) float64 {
	load := map[string]int{}
	total := 0
	for _, hs := range pl {
		for _, h := range hs {
			load[h]++
			total++
		}
	}
	mx := 0
	for _, l := range load {
		mx = max(mx, l)
	}
	return float64(mx) / (float64(total) / float64(nodeCount))
}

// consistentHashing places rf copies of each partition on the first rf
// distinct nodes clockwise from the partition's point on a ring with vnodes
// points per node.
func consistentHashing(ids []string, partitions, rf, vnodes int) placement {
	type point struct {
		h  uint64
		id string
	}
	ring := make([]point, 0, len(ids)*vnodes)
	for _, id := range ids {
		for v := 0; v < vnodes; v++ {
			ring = append(ring, point{mix(hashString(id), uint64(v)), id})
		}
	}
	sort.Slice(ring, func(i, j int) bool { return ring[i].h < ring[j].h })
	out := make(placement, partitions)
	for p := range out {
		h := mix(0xC0FFEE, uint64(p))
		i := sort.Search(len(ring), func(i int) bool { return ring[i].h >= h })
		for len(out[p]) < rf {
			id := ring[i%len(ring)].id
			if indexOf(out[p], id) < 0 {
				out[p] = append(out[p], id)
			}
			i++
		}
	}
	return out
}

// rendezvousHashing places rf copies of each partition on the rf nodes with
// the highest hash of (partition, node).
func rendezvousHashing(ids []string, partitions, rf int) placement {
	out := make(placement, partitions)
	hs := make([]uint64, len(ids))
	for i, id := range ids {
		hs[i] = hashString(id)
	}
	order := make([]int, len(ids))
	for p := range out {
		for i := range order {
			order[i] = i
		}
		score := func(i int) uint64 { return mix(hs[i], uint64(p)) }
		sort.Slice(order, func(a, b int) bool { return score(order[a]) > score(order[b]) })
		for _, i := range order[:rf] {
			out[p] = append(out[p], ids[i])
		}
	}
	return out
}

// BenchmarkMoves reports the copies moved by one join and one leave on the
// benchmark cluster: the planner, the optimum, consistent hashing with 100
// virtual nodes per node and rendezvous hashing; and max/mean copies per
// node after each (the goal is at most 1 + 1/mean).
func BenchmarkMoves(b *testing.B) {
	const rf = 3
	c := bigCluster(b)
	ids := c.MemberIDs()
	for b.Loop() {
	}
	// Join.
	before := placementOf(c)
	var loads []int
	copies, _ := counts(c)
	for _, id := range ids {
		loads = append(loads, copies[id])
	}
	loads = append(loads, 0)
	join(b, c, 2, node{id: "n101"})
	converge(b, c, 3)
	after := placementOf(c)
	joined := append(append([]string(nil), ids...), "n101")
	chBefore, chAfter := consistentHashing(ids, MaxPartitions, rf, 100), consistentHashing(joined, MaxPartitions, rf, 100)
	rvBefore, rvAfter := rendezvousHashing(ids, MaxPartitions, rf), rendezvousHashing(joined, MaxPartitions, rf)
	b.ReportMetric(float64(moved(before, after)), "join-planner-moves")
	b.ReportMetric(float64(optimumMoves(loads)), "join-optimum-moves")
	b.ReportMetric(float64(moved(chBefore, chAfter)), "join-chash-moves")
	b.ReportMetric(float64(moved(rvBefore, rvAfter)), "join-rendezvous-moves")
	b.ReportMetric(Balance(c).Copies.MaxOverMean, "join-planner-max/mean")
	b.ReportMetric(maxOverMean(chAfter, len(joined)), "join-chash-max/mean")
	b.ReportMetric(maxOverMean(rvAfter, len(joined)), "join-rendezvous-max/mean")
	mean := float64(MaxPartitions*rf) / float64(len(joined))
	b.ReportMetric(1+1/mean, "goal-max/mean")

	// Leave: n001 drains and goes.
	before = placementOf(c)
	copies, _ = counts(c)
	leaving := copies["n01"]
	setStatus(b, c, 4, "n01", StatusLeaving, PlanStatus(c, "n01", StatusLeaving, 1))
	converge(b, c, 5)
	after = placementOf(c)
	rest := joined[1:]
	chLeft, rvLeft := consistentHashing(rest, MaxPartitions, rf, 100), rendezvousHashing(rest, MaxPartitions, rf)
	b.ReportMetric(float64(moved(before, after)), "leave-planner-moves")
	b.ReportMetric(float64(leaving), "leave-optimum-moves")
	b.ReportMetric(float64(moved(chAfter, chLeft)), "leave-chash-moves")
	b.ReportMetric(float64(moved(rvAfter, rvLeft)), "leave-rendezvous-moves")
	b.ReportMetric(Balance(c).Copies.MaxOverMean, "leave-planner-max/mean")
	b.ReportMetric(maxOverMean(chLeft, len(rest)), "leave-chash-max/mean")
	b.ReportMetric(maxOverMean(rvLeft, len(rest)), "leave-rendezvous-max/mean")
}

// The resources benchmark of issue 15: ten resources with different
// partition counts and replication factors, 65,536 partitions in all, on
// 100 nodes, laid out and then converged (the planner evens out the sum of
// the per-resource layouts first).
func resourcesCluster(b *testing.B) *Cluster {
	b.Helper()
	c := bootstrap(b, 16384, 3, nodes(100))
	others := []Resource{
		{Name: "r1", Partitions: 8192, ReplicationFactor: 3},
		{Name: "r2", Partitions: 8192, ReplicationFactor: 2},
		{Name: "r3", Partitions: 8192, ReplicationFactor: 3},
		{Name: "r4", Partitions: 4096, ReplicationFactor: 1},
		{Name: "r5", Partitions: 4096, ReplicationFactor: 2},
		{Name: "r6", Partitions: 4096, ReplicationFactor: 3},
		{Name: "r7", Partitions: 4096, ReplicationFactor: 5},
		{Name: "r8", Partitions: 4096, ReplicationFactor: 3},
		{Name: "r9", Partitions: 4096, ReplicationFactor: 2},
	}
	for _, r := range others {
		mustApply(b, c, Command{Kind: CmdCreateResource, At: 2, Resource: &r, Table: LayoutResource(c, r)})
	}
	if n := c.ActivePartitions(); n != MaxPartitions {
		b.Fatalf("%d partitions, want %d", n, MaxPartitions)
	}
	if Converge(c, PlanInput{Ages: AgesAt(c, 3), Seed: 1}, 3) < 0 {
		b.Fatal("the ten resources do not converge")
	}
	return c
}

// BenchmarkPlanResources times Plan over the ten resources, next to the
// same Plan over the one-resource table of BenchmarkPlan (the reference, in
// the same run). Besides ns/op it reports cpu-ms/op, the process's CPU time
// per plan, which a machine shared with other work inflates far less than
// the wall time.
func BenchmarkPlanResources(b *testing.B) {
	plan := func(b *testing.B, c *Cluster, ages Ages) {
		b.ReportAllocs()
		var n int
		cpu := processCPU()
		for b.Loop() {
			n = len(Plan(PlanInput{Cluster: c, Ages: ages, Seed: 1, Limits: DefaultLimits()}))
		}
		b.ReportMetric(float64(processCPU()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(n), "actions")
	}
	one := bigCluster(b)
	b.Run("reference_one_resource", func(b *testing.B) { plan(b, one, AgesAt(one, 2)) })
	c := resourcesCluster(b)
	b.Run("settled", func(b *testing.B) { plan(b, c, AgesAt(c, 4)) })
	failed := c.Clone()
	setStatus(b, failed, 5, "n50", StatusFailed, PlanFailure(failed, "n50", 1))
	b.Run("after_one_failure", func(b *testing.B) { plan(b, failed, AgesAt(failed, 6)) })
	// A 101st node joins: every resource moves copies to it (the per-resource
	// targets and their min-cost ceilings, resource_balance.go).
	joined := c.Clone()
	mustApply(b, joined, Command{Kind: CmdUpsertMember, At: 7, Member: &Member{ID: "n101"}})
	b.Run("after_a_join", func(b *testing.B) { plan(b, joined, AgesAt(joined, 8)) })
}
