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
// the partition (see initialBetter), so that each node shares its
// partitions with nearly every other node and a failed node's copies can be
// re-created from many sources at once.
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
		for c := 0; c < p.k; c++ {
			copies, covered := p.zoneCounts(part, "")
			best, bestZone := -1, false
			for i := range p.nodes {
				nd := &p.nodes[i]
				if !nd.take || part.Holds(nd.id) {
					continue
				}
				zok := p.zoneOK(i, copies, covered)
				if best < 0 || zok && !bestZone || zok == bestZone && p.initialBetter(i, best, pi, zoneQuota, zoneGot, got) {
					best, bestZone = i, zok
				}
			}
			if best < 0 {
				break
			}
			got[best]++
			zoneGot[p.nodes[best].zone]++
			holders = append(holders, p.nodes[best].id)
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
		best := -1
		for _, h := range holders {
			i := p.idx[h]
			if !p.nodes[i].lead {
				continue
			}
			if best < 0 || p.primQuota[i]-prims[i] > p.primQuota[best]-prims[best] {
				best = i
			}
		}
		if best < 0 {
			continue
		}
		prims[best]++
		if holders[0] != p.nodes[best].id {
			part.Replicas = removeAt(part.Replicas, indexOf(part.Replicas, p.nodes[best].id))
			part.Replicas = append(part.Replicas, part.Primary)
			part.Primary = p.nodes[best].id
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

// initialBetter: the zone, then the node, furthest below its quota; ties
// by a hash of the node and the partition, then ID. The hash matters: with
// ties broken by ID alone, every partition would go to the next nodes in ID
// order, so each node would share its partitions with only a few
// neighbours in that order (four with RF 3), and after its failure only
// those could serve as sources of its copies (8 copies in flight with RF 3
// and 2 migrations per node, whatever MaxMigrations says). Hashed ties spread each node's
// partners over the whole cluster, the exact quotas stay as they were.
func (p *planner) initialBetter(i, j, part int, zoneQuota, zoneGot, got []int) bool {
	zi, zj := p.nodes[i].zone, p.nodes[j].zone
	if di, dj := zoneQuota[zi]-zoneGot[zi], zoneQuota[zj]-zoneGot[zj]; di != dj {
		return di > dj
	}
	if di, dj := p.copyQuota[i]-got[i], p.copyQuota[j]-got[j]; di != dj {
		return di > dj
	}
	if ti, tj := mix(p.nodes[i].tie, uint64(part)), mix(p.nodes[j].tie, uint64(part)); ti != tj {
		return ti < tj
	}
	return p.nodes[i].id < p.nodes[j].id
}
