package failover

// InitialTable lays out s.Partitions partitions over the members that can
// hold data and lead (alive or suspect, app healthy), with the planner's own
// quotas (see quota.go): zone-aware and weight-aware.
//
// Copies are dealt partition by partition: each copy goes to the allowed
// node (zone spread first) whose zone, and then the node itself, is furthest
// below its quota. Choosing the largest remaining deficit each time is the
// greedy that realises any feasible set of quotas exactly (Gale–Ryser), so
// with equal weights and one zone every node holds floor or ceil of the mean
// copies. Primaries are then chosen the same way against the primary quotas
// and finished with the planner's augmenting-path promotions, so primaries
// per node are within one of the weighted share as well. No node holds two
// copies of one partition.
//
// The table is a fixed point of Plan: planning right after bootstrap
// proposes nothing (tested for the shapes in the tests; with extreme weights
// and zones the planner may still have a few moves to make).
//
// Ties between equally deserving nodes are broken by a hash of the node and
// the partition (bySeed in initialCopy), so that each node shares its
// partitions with nearly every other node and a failed node's copies can be
// re-created from many sources at once. With ties broken by ID alone, every
// partition would go to the next nodes in ID order, so each node would share
// its partitions with only a few neighbours in that order (four with RF 3),
// and after its failure only those could serve as sources of its copies (8
// copies in flight with RF 3 and 2 migrations per node, whatever
// MaxMigrations says); the quotas are met exactly either way.
//
// InitialTable is part of the replicated state machine: every agent runs it
// when it applies the bootstrap entry. A change to its output (such as the
// hashed tie-break above) means that agents of different versions replaying
// the same bootstrap entry build different tables; a cluster whose raft log
// still begins with its bootstrap entry (no snapshot yet) must not mix
// binaries from both sides of such a change.
func InitialTable(s Settings, members map[string]Member) []Partition {
	table := make([]Partition, s.Partitions)
	for i := range table {
		table[i] = Partition{ID: i, Epoch: 1, Replicas: []string{}}
	}
	if len(members) == 0 || s.Partitions < 1 {
		return table
	}
	tmp := &Cluster{Bootstrapped: true, Settings: s, Members: members, Partitions: table}
	p := newPlanner(tmp, Ages{}, 0, Limits{})
	zoneQuota := make([]int, len(p.zc))
	for i, nd := range p.nodes {
		if nd.take {
			zoneQuota[nd.zone] += p.copyQuota[i]
		}
	}
	zoneGot := make([]int, len(p.zc))
	got := make([]int, len(p.nodes))
	for pi := range table {
		part := &table[pi]
		var holders []string
		for range p.k {
			copies, covered := p.zoneCounts(part, "")
			target := choice{d: &initialCopy}
			// One candidate value, refilled node by node: this loop runs
			// nodes × copies times, and only these fields differ.
			c := candidate{part: pi}
			for i := range p.nodes {
				nd := &p.nodes[i]
				if !nd.take || part.Holds(nd.id) {
					continue
				}
				c.node, c.id, c.tie, c.load, c.quota = i, nd.id, nd.tie, got[i], p.copyQuota[i]
				c.zoneOK, c.zoneRoom = p.zoneOK(i, copies, covered), zoneQuota[nd.zone]-zoneGot[nd.zone]
				target.offer(&c)
			}
			if !target.ok {
				break
			}
			best := target.best
			got[best.node]++
			zoneGot[p.nodes[best.node].zone]++
			holders = append(holders, best.id)
			// Keep the partition's holders current for zoneCounts.
			part.Primary = holders[0]
			part.Replicas = append([]string{}, holders[1:]...)
		}
	}
	// Primaries: the holder furthest below its primary quota.
	p.count()
	p.computeQuotas()
	prims := make([]int, len(p.nodes))
	for pi := range table {
		part := &table[pi]
		holders := part.Holders()
		leader := choice{d: &initialPrimary}
		for _, h := range holders {
			if i := p.idx[h]; p.nodes[i].lead {
				leader.offer(&candidate{node: i, id: h, load: prims[i], quota: p.primQuota[i]})
			}
		}
		if !leader.ok {
			continue
		}
		best := leader.best
		prims[best.node]++
		if holders[0] != best.id {
			part.Replicas = removeAt(part.Replicas, indexOf(part.Replicas, best.id))
			part.Replicas = append(part.Replicas, part.Primary)
			part.Primary = best.id
		}
	}
	// Finish the primaries exactly with augmenting-path promotions.
	for round := 0; round < 64; round++ {
		q := newPlanner(tmp, Ages{}, 0, Limits{})
		q.rebalancePrimaries()
		if len(q.actions) == 0 {
			break
		}
		for _, a := range q.actions {
			part := &table[a.Partition]
			if !tmp.applyAction(part, a, 0) {
				break
			}
		}
	}
	for i := range table {
		table[i].Epoch = 1
	}
	return table
}
