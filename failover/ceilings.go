package failover

// Handing out the ceilings of the per-resource targets (resource_balance.go)
// is a small transportation problem: resource r has left[r] ceilings to
// give, each to a different node among its candidates; node i should take
// at least roomLo[i] and at most roomHi[i] of them so that its total lies
// in its band. A ceiling on a node that already holds it costs no move,
// elsewhere one. A min-cost flow finds the assignment that meets the bands
// where they can be met and, among those, moves the fewest copies: a
// ceiling that takes a node from its floor to its ceiling costs
// ceilingSlotCost, more than the move it could save, so floors are filled
// first; one that finds no room at all goes over a node's band at
// overflowCost, so that every resource still gets its count. The costs
// depend only on the loads, not on an earlier plan, so a table on its
// targets keeps them.

const (
	ceilingSlotCost = 2
	overflowCost    = 1 << 20
)

// flowEdge is one arc of the residual graph.
type flowEdge struct {
	to, cap, cost int
}

type minCostFlow struct {
	edges []flowEdge
	adj   [][]int // edge indexes by origin; edge e^1 is e's reverse
}

func newMinCostFlow(vertices int) *minCostFlow {
	return &minCostFlow{adj: make([][]int, vertices)}
}

// add adds an arc and returns its index.
func (f *minCostFlow) add(from, to, cap, cost int) int {
	e := len(f.edges)
	f.edges = append(f.edges, flowEdge{to: to, cap: cap, cost: cost}, flowEdge{to: from, cap: 0, cost: -cost})
	f.adj[from] = append(f.adj[from], e)
	f.adj[to] = append(f.adj[to], e+1)
	return e
}

// run pushes up to want units from s to t at the least cost, and returns
// the units pushed. It is the primal-dual method: the cheapest distances
// from s (Bellman-Ford with a queue), then as many units as fit along the
// arcs that lie on cheapest paths (Dinic's blocking flows over them), then
// the distances again. The costs take a few values only, so a few rounds
// of distances do for hundreds of units.
func (f *minCostFlow) run(s, t, want int) int {
	n := len(f.adj)
	dist, level, iter := make([]int, n), make([]int, n), make([]int, n)
	ring := make([]int, n)
	inQueue := make([]bool, n)
	pushed := 0
	for pushed < want {
		f.distances(s, dist, ring, inQueue)
		if dist[t] == unreachable {
			break
		}
		for pushed < want && f.levels(s, t, dist, level, ring) {
			clear(iter)
			for pushed < want {
				got := f.augment(s, t, want-pushed, dist, level, iter)
				if got == 0 {
					break
				}
				pushed += got
			}
		}
	}
	return pushed
}

const unreachable = 1 << 62

// distances computes the cheapest distance from s to every vertex over
// the arcs with capacity left. A vertex is in the queue at most once: a
// ring of n slots holds it.
func (f *minCostFlow) distances(s int, dist, ring []int, inQueue []bool) {
	n := len(f.adj)
	for i := range dist {
		dist[i] = unreachable
	}
	dist[s] = 0
	head, size := 0, 1
	ring[0] = s
	inQueue[s] = true
	for size > 0 {
		u := ring[head]
		head, size = (head+1)%n, size-1
		inQueue[u] = false
		for _, e := range f.adj[u] {
			ed := &f.edges[e]
			if ed.cap > 0 && dist[u]+ed.cost < dist[ed.to] {
				dist[ed.to] = dist[u] + ed.cost
				if !inQueue[ed.to] {
					inQueue[ed.to] = true
					ring[(head+size)%n] = ed.to
					size++
				}
			}
		}
	}
}

// admissible reports whether arc e out of u lies on a cheapest path.
func (f *minCostFlow) admissible(u, e int, dist []int) bool {
	ed := &f.edges[e]
	return ed.cap > 0 && dist[u] != unreachable && dist[u]+ed.cost == dist[ed.to]
}

// levels numbers the vertices by their arc count from s over admissible
// arcs (so that augment never goes round a cycle of cost 0), and reports
// whether t is reached.
func (f *minCostFlow) levels(s, t int, dist, level, queue []int) bool {
	for i := range level {
		level[i] = -1
	}
	level[s] = 0
	queue = append(queue[:0], s)
	for x := 0; x < len(queue); x++ {
		u := queue[x]
		for _, e := range f.adj[u] {
			if v := f.edges[e].to; level[v] < 0 && f.admissible(u, e, dist) {
				level[v] = level[u] + 1
				queue = append(queue, v)
			}
		}
	}
	return level[t] >= 0
}

// augment pushes up to limit units from u to t along admissible arcs that
// go one level up, and returns the units pushed.
func (f *minCostFlow) augment(u, t, limit int, dist, level, iter []int) int {
	if u == t {
		return limit
	}
	for ; iter[u] < len(f.adj[u]); iter[u]++ {
		e := f.adj[u][iter[u]]
		v := f.edges[e].to
		if level[v] != level[u]+1 || !f.admissible(u, e, dist) {
			continue
		}
		if got := f.augment(v, t, min(limit, f.edges[e].cap), dist, level, iter); got > 0 {
			f.edges[e].cap -= got
			f.edges[e^1].cap += got
			return got
		}
	}
	return 0
}

// handOutCeilings decides which candidates of each resource get its
// ceilings: left[r] of candidates[r], at most one each, between roomLo[i]
// and roomHi[i] per node, held(r, i) when node i already holds resource
// r's ceiling. It returns, per resource, the chosen nodes.
func handOutCeilings(left []int, candidates [][]int, roomLo, roomHi []int, held func(r, i int) bool) [][]int {
	nr, nn := len(left), len(roomLo)
	s, t := nr+nn, nr+nn+1
	f := newMinCostFlow(nr + nn + 2)
	want := 0
	source := make([]int, nr) // arc s→r, -1 without one
	for r := range left {
		source[r] = -1
		if left[r] > 0 {
			source[r] = f.add(s, r, left[r], 0)
			want += left[r]
		}
	}
	arcs := make([][]int, nr)
	for r, cand := range candidates {
		arcs[r] = make([]int, len(cand))
		for x, i := range cand {
			cost := 1
			if held(r, i) {
				cost = 0
			}
			arcs[r][x] = f.add(r, nr+i, 1, cost)
		}
	}
	floor := make([]int, nn) // arc i→t of the floor slots, -1 without one
	for i := range roomLo {
		floor[i] = -1
		lo := max(roomLo[i], 0)
		if lo > 0 {
			floor[i] = f.add(nr+i, t, lo, 0)
		}
		if hi := roomHi[i] - lo; hi > 0 {
			f.add(nr+i, t, hi, ceilingSlotCost)
		}
		f.add(nr+i, t, nr, overflowCost)
	}
	// Paths of cost 0 first, without a search: a held ceiling into a
	// floor slot. No path costs less, so the flow stays a cheapest one,
	// and a table near its targets needs few searches after.
	pushed := 0
	for r, cand := range candidates {
		for x, i := range cand {
			a, in, out := arcs[r][x], source[r], floor[i]
			if in < 0 || out < 0 || f.edges[a].cost != 0 || f.edges[in].cap == 0 || f.edges[out].cap == 0 {
				continue
			}
			for _, e := range []int{in, a, out} {
				f.edges[e].cap--
				f.edges[e^1].cap++
			}
			pushed++
		}
	}
	f.run(s, t, want-pushed)
	out := make([][]int, nr)
	for r, cand := range candidates {
		for x, i := range cand {
			if f.edges[arcs[r][x]].cap == 0 {
				out[r] = append(out[r], i)
			}
		}
	}
	return out
}
