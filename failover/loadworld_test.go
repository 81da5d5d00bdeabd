package failover

import (
	"fmt"
	"math"
	"math/rand"
	"sort"
	"time"
)

// loadWorld is a cluster whose apps report figures: every partition has a
// true load and size; each copy reports the partition's load (times
// replicaShare on a replica), optionally with noise, and its size; each node
// reports its disk as the sum of its copies plus a fixed extra.
type loadWorld struct {
	t            fataler
	c            *Cluster
	load         []float64
	size         []int64
	replicaShare float64
	capacity     map[string]int64 // disk capacity per node (0: no disk reported)
	extra        map[string]int64 // disk used besides the copies
	silent       map[string]bool  // nodes that report nothing
	noise        float64          // each reported load is off by up to ±noise (a fraction)
	rng          *rand.Rand

	now     time.Duration // the world's monotonic clock
	epochs  []uint64
	movedAt []time.Duration
	moves   int // copies started so far
	promos  int // promotions so far
}

// bootstrapFor is bootstrap for any fataler.
func bootstrapFor(t fataler, partitions, rf int, ns []node) *Cluster {
	t.Helper()
	c := NewCluster()
	var ms []Member
	for _, n := range ns {
		ms = append(ms, Member{ID: n.id, Zone: n.zone, Weight: n.weight})
	}
	applyOK(t, c, Command{Kind: CmdBootstrap, At: 1, Settings: &Settings{Partitions: partitions, ReplicationFactor: rf}, Members: ms})
	return c
}

// applyOK is mustApply for any fataler.
func applyOK(t fataler, c *Cluster, cmd Command) {
	t.Helper()
	if _, err := c.Apply(cmd); err != nil {
		t.Fatalf("apply %s: %v", cmd.Kind, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("after %s: %v", cmd.Kind, err)
	}
}

func newLoadWorld(t fataler, c *Cluster, seed int64) *loadWorld {
	w := &loadWorld{t: t, c: c, replicaShare: 1, capacity: map[string]int64{}, extra: map[string]int64{}, silent: map[string]bool{},
		rng: rand.New(rand.NewSource(seed)), load: make([]float64, len(c.Partitions)), size: make([]int64, len(c.Partitions))}
	w.epochs = make([]uint64, len(c.Partitions))
	w.movedAt = make([]time.Duration, len(c.Partitions))
	for i, p := range c.Partitions {
		w.epochs[i] = p.Epoch
		w.movedAt[i] = -24 * time.Hour // long settled
	}
	return w
}

// zipf gives partition loads following a Zipf law of exponent s over ranks
// shuffled by the world's seed, summing to total.
func (w *loadWorld) zipf(s, total float64) {
	ranks := w.rng.Perm(len(w.load))
	sum := 0.0
	for k := range w.load {
		sum += math.Pow(float64(k+1), -s)
	}
	for pi, r := range ranks {
		w.load[pi] = total * math.Pow(float64(r+1), -s) / sum
	}
}

// copyLoad is the true load of node's copy of p.
func (w *loadWorld) copyLoad(p Partition, node string) float64 {
	if p.Primary == node {
		return w.load[p.ID]
	}
	return w.load[p.ID] * w.replicaShare
}

// figures are the reports as the leader would hold them now.
func (w *loadWorld) figures() *Figures {
	f := &Figures{Nodes: map[string]NodeFigures{}}
	for _, id := range w.c.MemberIDs() {
		if w.silent[id] || !w.c.Members[id].CanHold() {
			continue
		}
		f.Nodes[id] = NodeFigures{DiskCapacity: w.capacity[id], DiskUsed: w.extra[id], Copies: map[int]CopyFigures{}}
	}
	for _, p := range w.c.Partitions {
		for _, h := range p.Holders() {
			nf, ok := f.Nodes[h]
			if !ok {
				continue
			}
			l := w.copyLoad(p, h)
			if w.noise > 0 {
				l *= 1 + w.noise*(2*w.rng.Float64()-1)
			}
			nf.Copies[p.ID] = CopyFigures{Size: w.size[p.ID], Load: l}
			nf.DiskUsed += w.size[p.ID]
			f.Nodes[h] = nf
		}
	}
	return f
}

// ages are the state's ages plus how long ago each partition last changed.
func (w *loadWorld) ages() Ages {
	a := AgesAt(w.c, int64(w.now))
	a.Moved = map[int]time.Duration{}
	for i, p := range w.c.Partitions {
		if p.Epoch != w.epochs[i] {
			w.epochs[i], w.movedAt[i] = p.Epoch, w.now
		}
		a.Moved[i] = w.now - w.movedAt[i]
	}
	return a
}

// input is the plan input of the world now.
func (w *loadWorld) input(pol LoadPolicy, lim Limits, withFigures bool) PlanInput {
	in := PlanInput{Cluster: w.c, Ages: w.ages(), Seed: 1, Limits: lim, Load: pol}
	if withFigures {
		in.Figures = w.figures()
	}
	return in
}

// round plans once, applies the plan and acknowledges every copy at once;
// it returns the plan.
func (w *loadWorld) round(pol LoadPolicy, lim Limits, withFigures bool) []Action {
	w.t.Helper()
	acts := Plan(w.input(pol, lim, withFigures))
	w.now += time.Second
	if len(acts) == 0 {
		return nil
	}
	for _, a := range acts {
		switch a.Kind {
		case ActionStartMigration:
			w.moves++
		case ActionPromote:
			w.promos++
		}
	}
	applyOK(w.t, w.c, Command{Kind: CmdApplyActions, At: int64(w.now), Actions: acts})
	if acks := AcknowledgeAll(w.c); len(acks) > 0 {
		applyOK(w.t, w.c, Command{Kind: CmdApplyActions, At: int64(w.now), Actions: acks})
	}
	return acts
}

// settle plans until the plan is empty; it returns the rounds taken.
func (w *loadWorld) settle(pol LoadPolicy, lim Limits, withFigures bool) int {
	w.t.Helper()
	for r := 0; r < 2000; r++ {
		if w.round(pol, lim, withFigures) == nil {
			return r
		}
	}
	w.t.Fatalf("no convergence after 2000 rounds")
	return -1
}

// nodeLoads are the true loads of the nodes that may lead, by ID.
func (w *loadWorld) nodeLoads() map[string]float64 {
	out := map[string]float64{}
	for _, id := range w.c.MemberIDs() {
		if w.c.Members[id].CanLead() {
			out[id] = 0
		}
	}
	for _, p := range w.c.Partitions {
		for _, h := range p.Holders() {
			if _, ok := out[h]; ok {
				out[h] += w.copyLoad(p, h)
			}
		}
	}
	return out
}

// loadMaxOverMean is the largest node load over the mean.
func loadMaxOverMean(loads map[string]float64) float64 {
	var sum, max float64
	for _, l := range loads {
		sum += l
		max = math.Max(max, l)
	}
	if sum == 0 {
		return 0
	}
	return max / (sum / float64(len(loads)))
}

// diskUse is each node's true disk use as a fraction of its capacity.
func (w *loadWorld) diskUse() map[string]float64 {
	used := map[string]int64{}
	for id := range w.capacity {
		used[id] = w.extra[id]
	}
	for _, p := range w.c.Partitions {
		for _, h := range p.Holders() {
			used[h] += w.size[p.ID]
		}
	}
	out := map[string]float64{}
	for id, c := range w.capacity {
		if c > 0 {
			out[id] = float64(used[id]) / float64(c)
		}
	}
	return out
}

// sortedIDs returns m's keys in order.
func sortedIDs[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// departures remembers when each copy left its node, to catch a copy that
// comes back to it.
type departures struct {
	ids  []string
	left map[[2]int]time.Duration // (partition, node index): when its copy left
}

func newDepartures(c *Cluster) *departures {
	return &departures{ids: c.MemberIDs(), left: map[[2]int]time.Duration{}}
}

// record compares the placements before and after a round planned at now
// and describes each copy that came back to a node it left less than
// within ago.
func (d *departures) record(before, after placement, now, within time.Duration) []string {
	var back []string
	for pi := range after {
		for ni, id := range d.ids {
			had, has := contains(before[pi], id), contains(after[pi], id)
			if had && !has {
				d.left[[2]int{pi, ni}] = now
			}
			if at, ok := d.left[[2]int{pi, ni}]; ok && !had && has && now-at < within {
				back = append(back, fmt.Sprintf("at %v a copy of p%d came back to %s, which it left at %v", now, pi, id, at))
			}
		}
	}
	return back
}
