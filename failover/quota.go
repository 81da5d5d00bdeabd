package failover

import (
	"math"
	"sort"
)

// Shares and quotas.
//
// Balance is defined against each node's *share*: the weight-proportional
// part of the copies (or primaries) the cluster should hold, after capping by
// what the hard constraints allow. A node's *quota* is its share rounded to
// floor(share) or ceil(share), with the rounded-up places given to the nodes
// that already hold the most (so that a balanced table keeps its quotas and
// the number of copies that must move is the smallest possible). The planner
// moves copies only from nodes above their quota to nodes below it: a node
// within [floor(share), ceil(share)] is never touched, which is the threshold
// that stops thrashing.
//
// Copies are shared in two levels, zones and then nodes in a zone:
//   - a zone's share is proportional to the weight of its nodes, but at most
//     Partitions × (copies of one partition the zone may hold under the zone
//     spread rule) and at least Partitions × 1 when every partition must
//     have a copy in every zone (k ≥ zones);
//   - a node's share is proportional to its weight within its zone's share,
//     capped at Partitions (one copy of a partition per node).
//
// With a single zone (or zones of equal total weight) and no capped node,
// the share is exactly copies × weight / total weight.

// zoneRule is the zone spread rule for partitions of k copies over z zones:
// at most maxPer copies of one partition in one zone, and copies in at least
// min(k, z) distinct zones.
type zoneRule struct {
	k, zones int
	maxPer   int
}

// spread is the number of distinct zones a partition's copies must cover.
func (r zoneRule) spread() int { return min(r.k, r.zones) }

func newZoneRule(k, zones int) zoneRule {
	r := zoneRule{k: k, zones: zones}
	switch {
	case zones <= 1:
		r.maxPer = k
	case k <= zones:
		r.maxPer = 1
	default:
		r.maxPer = k - zones + 1
	}
	return r
}

// waterFill splits total over items in proportion to w, each clamped to
// [lo, hi]. It returns real shares summing to total when that is feasible.
func waterFill(total float64, w, lo, hi []float64) []float64 {
	n := len(w)
	out := make([]float64, n)
	fixed := make([]bool, n)
	for iter := 0; iter <= n; iter++ {
		rest, wsum := total, 0.0
		for i := 0; i < n; i++ {
			if fixed[i] {
				rest -= out[i]
			} else {
				wsum += w[i]
			}
		}
		if wsum == 0 {
			break
		}
		lambda := rest / wsum
		// Fix the violators in the direction of the total's error only:
		// clamping both ways at once can over-correct.
		over, under := 0.0, 0.0
		for i := 0; i < n; i++ {
			if fixed[i] {
				continue
			}
			v := lambda * w[i]
			if v > hi[i] {
				over += v - hi[i]
			} else if v < lo[i] {
				under += lo[i] - v
			}
		}
		changed := false
		for i := 0; i < n; i++ {
			if fixed[i] {
				continue
			}
			v := lambda * w[i]
			switch {
			case v > hi[i] && over >= under:
				out[i], fixed[i], changed = hi[i], true, true
			case v < lo[i] && under > over:
				out[i], fixed[i], changed = lo[i], true, true
			default:
				out[i] = v
			}
		}
		if !changed {
			break
		}
	}
	return out
}

// roundShares turns real shares into integers q[i] in {floor, ceil} of s[i]
// (and at most hi[i]) that sum to target. The rounded-up places go first to
// the items whose current count cur[i] is highest above floor(s[i]), then by
// tie[i], then by index: a balanced state keeps its quotas.
func roundShares(s []float64, target int, cur []int, hi []int, tie []uint64) []int {
	n := len(s)
	q := make([]int, n)
	sum := 0
	for i := range s {
		q[i] = int(math.Floor(s[i] + 1e-9))
		if q[i] > hi[i] {
			q[i] = hi[i]
		}
		if q[i] < 0 {
			q[i] = 0
		}
		sum += q[i]
	}
	need := target - sum
	if need == 0 {
		return q
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		i, j := order[a], order[b]
		fi, fj := s[i]-float64(q[i]) > 1e-9, s[j]-float64(q[j]) > 1e-9
		if fi != fj {
			return fi // fractional shares round up first
		}
		di, dj := cur[i]-q[i], cur[j]-q[j]
		if di != dj {
			return di > dj
		}
		if tie[i] != tie[j] {
			return tie[i] < tie[j]
		}
		return i < j
	})
	for need > 0 {
		progress := false
		for _, i := range order {
			if need == 0 {
				break
			}
			if q[i] < hi[i] {
				q[i]++
				need--
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	for need < 0 {
		progress := false
		for k := n - 1; k >= 0 && need < 0; k-- {
			if i := order[k]; q[i] > 0 {
				q[i]--
				need++
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	return q
}

// copyShares computes each node's real share and integer quota of copies.
// takers lists the node indexes that may receive copies; zoneOf maps a node
// to its zone index (0..zones-1 over the takers); frozen is the number of
// copies held by nodes that keep what they have but take nothing new (their
// copies are subtracted from the total). cur is each node's current count.
func copyShares(partitions, k int, takers []int, weight []int, zoneOf []int, zones int, frozen int, cur []int, tie []uint64) (share []float64, quota []int) {
	n := len(weight)
	share = make([]float64, n)
	quota = make([]int, n)
	if len(takers) == 0 || k == 0 {
		return share, quota
	}
	total := partitions*k - frozen
	if total < 0 {
		total = 0
	}
	rule := newZoneRule(k, zones)
	// Zone level.
	zw := make([]float64, zones)
	zn := make([]int, zones)
	zcur := make([]int, zones)
	for _, i := range takers {
		z := zoneOf[i]
		zw[z] += float64(weight[i])
		zn[z]++
		zcur[z] += cur[i]
	}
	zlo := make([]float64, zones)
	zhi := make([]float64, zones)
	zhiInt := make([]int, zones)
	for z := 0; z < zones; z++ {
		per := rule.maxPer
		if zn[z] < per {
			per = zn[z]
		}
		zhiInt[z] = partitions * per
		zhi[z] = float64(zhiInt[z])
		if zones > 1 && k >= zones {
			zlo[z] = float64(partitions)
		}
		if zlo[z] > zhi[z] {
			zlo[z] = zhi[z]
		}
	}
	zshare := waterFill(float64(total), zw, zlo, zhi)
	ztie := make([]uint64, zones)
	for z := range ztie {
		ztie[z] = uint64(z)
	}
	zquota := roundShares(zshare, total, zcur, zhiInt, ztie)
	// Node level, zone by zone.
	byZone := make([][]int, zones)
	for _, i := range takers {
		byZone[zoneOf[i]] = append(byZone[zoneOf[i]], i)
	}
	for z, members := range byZone {
		w := make([]float64, len(members))
		lo := make([]float64, len(members))
		hi := make([]float64, len(members))
		hiInt := make([]int, len(members))
		c := make([]int, len(members))
		t := make([]uint64, len(members))
		for j, i := range members {
			w[j] = float64(weight[i])
			hi[j] = float64(partitions)
			hiInt[j] = partitions
			c[j] = cur[i]
			t[j] = tie[i]
		}
		s := waterFill(zshare[z], w, lo, hi)
		q := roundShares(s, zquota[z], c, hiInt, t)
		for j, i := range members {
			share[i] = s[j]
			quota[i] = q[j]
		}
	}
	return share, quota
}

// primaryShares computes each leader-capable node's share and quota of
// primaries: total primaries in proportion to weight, each capped by the
// copies the node holds (it can only lead what it holds).
func primaryShares(total int, leaders []int, weight []int, held []int, cur []int, tie []uint64) (share []float64, quota []int) {
	n := len(weight)
	share = make([]float64, n)
	quota = make([]int, n)
	if len(leaders) == 0 {
		return share, quota
	}
	w := make([]float64, len(leaders))
	lo := make([]float64, len(leaders))
	hi := make([]float64, len(leaders))
	hiInt := make([]int, len(leaders))
	c := make([]int, len(leaders))
	t := make([]uint64, len(leaders))
	for j, i := range leaders {
		w[j] = float64(weight[i])
		hi[j] = float64(held[i])
		hiInt[j] = held[i]
		c[j] = cur[i]
		t[j] = tie[i]
	}
	s := waterFill(float64(total), w, lo, hi)
	q := roundShares(s, total, c, hiInt, t)
	for j, i := range leaders {
		share[i] = s[j]
		quota[i] = q[j]
	}
	return share, quota
}
