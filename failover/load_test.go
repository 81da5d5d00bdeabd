package failover

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// noHysteresis is the default policy without the wait between two moves
// of one partition, for the tests that count moves to convergence.
func noHysteresis() LoadPolicy {
	pol := DefaultLoadPolicy()
	pol.Hysteresis = 0
	return pol
}

func TestHotPartitionsPrimaryGoesToTheLeastLoadedReplica(t *testing.T) {
	c := bootstrap(t, 20, 3, nodes(5))
	w := newLoadWorld(t, c, 1)
	w.replicaShare = 0.1
	hot := 0
	idle := c.Partitions[hot].Replicas[0]
	// One replica of the hot partition serves nothing else; the other
	// partitions are warm.
	for i, p := range c.Partitions {
		if w.load[i] = 20; p.Holds(idle) {
			w.load[i] = 0
		}
	}
	w.load[hot] = 100
	primary := c.Partitions[hot].Primary
	loads := w.nodeLoads()
	least := ""
	for _, r := range c.Partitions[hot].Replicas {
		if least == "" || loads[r] < loads[least] {
			least = r
		}
	}

	acts := Plan(w.input(noHysteresis(), DefaultLimits(), true))

	var got *Action
	for i, a := range acts {
		if a.Partition == hot {
			got = &acts[i]
		}
	}
	if got == nil || got.Kind != ActionPromote || got.Node != least {
		t.Fatalf("hot partition %d (primary %s, loads %v): want a promotion of %s, the least loaded replica; plan: %v", hot, primary, loads, least, acts)
	}
	if !strings.Contains(strings.Join(got.Reasons, "; "), "load: "+primary+" carries") {
		t.Errorf("the promotion's reasons do not name the load that drove it: %q", got.Reasons)
	}
	for _, a := range acts {
		if a.Kind == ActionStartMigration && a.Partition == hot {
			t.Errorf("the hot partition was copied, not promoted: %v", a)
		}
	}
}

func TestDiskOverHighTakesNoCopyAndOverFullSheds(t *testing.T) {
	c := bootstrap(t, 12, 2, nodes(4))
	w := newLoadWorld(t, c, 1)
	for i := range w.size {
		w.size[i] = 100
	}
	for _, id := range c.MemberIDs() {
		w.capacity[id] = 10000
	}
	// n01 fills up with something else: over -disk-full.
	w.extra["n01"] = 9500
	// n02 is over -disk-high: it keeps its copies, takes none.
	w.extra["n02"] = 9200
	before, _ := counts(c)

	w.settle(noHysteresis(), DefaultLimits(), true)

	use := w.diskUse()
	if use["n01"] > 0.95 {
		t.Errorf("n01 still uses %.3f of its disk, over -disk-full", use["n01"])
	}
	after, _ := counts(c)
	if after["n02"] > before["n02"] {
		t.Errorf("n02, over -disk-high, went from %d to %d copies", before["n02"], after["n02"])
	}
	for _, p := range c.Partitions {
		if len(p.Holders()) != 2 || p.Primary == "" {
			t.Errorf("partition %d has holders %v after shedding, want 2 with a primary", p.ID, p.Holders())
		}
	}
	for id, u := range use {
		if id != "n01" && id != "n02" && u > 0.925 {
			t.Errorf("%s received copies up to %.3f of its disk, over -disk-high", id, u)
		}
	}
}

// Figures from only some of the live nodes balance nothing by load: with
// -balance-by count and no disk over its thresholds the plan is the
// counts-only plan; with -balance-by load no action moves or promotes for
// load (counts balance within the wide bands until every node reports).
func TestPartialFiguresBalanceNothingByLoad(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 8).Draw(rt, "nodes")
		c := bootstrapFor(rt, rapid.IntRange(4, 48).Draw(rt, "partitions"), rapid.IntRange(1, 3).Draw(rt, "rf"), nodes(n))
		// Some history: a join and a failure, so that there is work.
		applyOK(rt, c, Command{Kind: CmdUpsertMember, At: 2, Member: &Member{ID: "n99"}})
		failed := c.MemberIDs()[rapid.IntRange(0, n-1).Draw(rt, "failed")]
		applyOK(rt, c, Command{Kind: CmdSetStatus, At: 3, Node: failed, Status: StatusFailed, Actions: PlanFailure(c, failed, 7)})
		w := newLoadWorld(rt, c, 1)
		for i := range w.load {
			w.load[i] = rapid.Float64Range(0, 100).Draw(rt, "load")
		}
		live := []string{}
		for _, id := range c.MemberIDs() {
			if c.Members[id].CanHold() {
				live = append(live, id)
			}
		}
		w.silent[rapid.SampledFrom(live).Draw(rt, "silent")] = true
		counts := noHysteresis()
		counts.CountsOnly = true
		byLoad := rapid.Bool().Draw(rt, "-balance-by load")
		for round := 0; round < 50; round++ {
			if byLoad {
				for _, a := range Plan(w.input(noHysteresis(), DefaultLimits(), true)) {
					if why := strings.Join(a.Reasons, "; "); strings.HasPrefix(why, "load:") || strings.HasPrefix(why, "size:") {
						rt.Fatalf("round %d: with a node silent, %v balances by load: %s", round, a, why)
					}
				}
			} else {
				with := Plan(w.input(counts, DefaultLimits(), true))
				without := Plan(w.input(counts, DefaultLimits(), false))
				if !reflect.DeepEqual(with, without) {
					rt.Fatalf("round %d: partial figures changed the plan:\nwith    %v\nwithout %v", round, with, without)
				}
			}
			pol := counts
			if byLoad {
				pol = noHysteresis()
			}
			if w.round(pol, DefaultLimits(), true) == nil {
				return
			}
		}
	})
}

// With CountsOnly (-balance-by count, the agent's default) every live node's
// load figures balance nothing: without a disk over its thresholds, the plan
// is the counts-only plan, round after round.
func TestCountsOnlyIgnoresTheLoadFigures(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 8).Draw(rt, "nodes")
		c := bootstrapFor(rt, rapid.IntRange(4, 48).Draw(rt, "partitions"), rapid.IntRange(1, 3).Draw(rt, "rf"), nodes(n))
		applyOK(rt, c, Command{Kind: CmdUpsertMember, At: 2, Member: &Member{ID: "n99"}})
		w := newLoadWorld(rt, c, 1)
		for i := range w.load {
			w.load[i] = rapid.Float64Range(0, 100).Draw(rt, "load")
		}
		pol := noHysteresis()
		pol.CountsOnly = true
		for round := 0; round < 50; round++ {
			with := Plan(w.input(pol, DefaultLimits(), true))
			without := Plan(w.input(pol, DefaultLimits(), false))
			if !reflect.DeepEqual(with, without) {
				rt.Fatalf("round %d: load figures changed a counts-only plan:\nwith    %v\nwithout %v", round, with, without)
			}
			if w.round(pol, DefaultLimits(), false) == nil {
				return
			}
		}
	})
}

// Disk thresholds under any sizes: a node over -disk-full ends under it
// when the others have room, a copy never lands where it takes its node
// over -disk-high, and no partition loses a copy on the way.
func TestDiskThresholdsHoldUnderAnySizes(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 7).Draw(rt, "nodes")
		rf := rapid.IntRange(1, 3).Draw(rt, "rf")
		c := bootstrapFor(rt, rapid.IntRange(4, 40).Draw(rt, "partitions"), rf, zoned(n, "a", "b", "c")[:n])
		w := newLoadWorld(rt, c, 1)
		for i := range w.size {
			w.size[i] = int64(rapid.IntRange(1, 100).Draw(rt, "size"))
		}
		var total int64
		for _, s := range w.size {
			total += s * int64(rf)
		}
		full := c.MemberIDs()[rapid.IntRange(0, n-1).Draw(rt, "full")]
		for _, id := range c.MemberIDs() {
			// Room for everything at a third of each disk...
			w.capacity[id] = 3 * total
		}
		// ...but one node's disk is nearly full of something else.
		w.extra[full] = int64(rapid.Float64Range(0.90, 0.99).Draw(rt, "fill") * float64(w.capacity[full]))
		for round := 0; ; round++ {
			if round > 500 {
				rt.Fatalf("no convergence")
			}
			before := w.diskUse()
			acts := w.round(noHysteresis(), DefaultLimits(), true)
			after := w.diskUse()
			for _, a := range acts {
				if a.Kind == ActionStartMigration && after[a.Node] > 0.925 && after[a.Node] > before[a.Node] {
					rt.Fatalf("a copy of p%d went to %s, taking it to %.3f of its disk", a.Partition, a.Node, after[a.Node])
				}
			}
			if acts == nil {
				break
			}
		}
		if u := w.diskUse()[full]; u > 0.95 {
			// Unless it holds nothing more it could give.
			copies, _ := counts(c)
			if copies[full] > 0 && n > rf {
				rt.Fatalf("%s ends at %.3f of its disk with %d copies", full, u, copies[full])
			}
		}
		for _, p := range c.Partitions {
			if got := len(p.Holders()); got != rf || p.Primary == "" {
				rt.Fatalf("partition %d has %d copies (want %d) or no primary: %v", p.ID, got, rf, p.Holders())
			}
		}
	})
}

// distance is the sum over nodes of how far each node's true load is
// from the mean.
func distance(loads map[string]float64) float64 {
	var sum float64
	for _, l := range loads {
		sum += l
	}
	mean := sum / float64(len(loads))
	var d float64
	for _, l := range loads {
		if l > mean {
			d += l - mean
		} else {
			d += mean - l
		}
	}
	return d
}

// Convergence: every round of load balancing brings the nodes closer to
// the mean in total, and balancing stops.
func TestLoadBalancingConvergesUnderAnyLoads(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 9).Draw(rt, "nodes")
		c := bootstrapFor(rt, rapid.IntRange(4, 96).Draw(rt, "partitions"), rapid.IntRange(1, 3).Draw(rt, "rf"), nodes(n))
		w := newLoadWorld(rt, c, 1)
		w.replicaShare = rapid.Float64Range(0, 1).Draw(rt, "replica share")
		if rapid.Bool().Draw(rt, "zipf") {
			w.zipf(rapid.Float64Range(0.5, 2).Draw(rt, "s"), 1000)
		} else {
			for i := range w.load {
				w.load[i] = rapid.Float64Range(0, 100).Draw(rt, "load")
			}
		}
		for round := 0; ; round++ {
			if round > 300 {
				rt.Fatalf("no convergence after %d rounds", round)
			}
			d := distance(w.nodeLoads())
			acts := w.round(noHysteresis(), DefaultLimits(), true)
			if acts == nil {
				return
			}
			if after := distance(w.nodeLoads()); after >= d-1e-9 {
				rt.Fatalf("round %d moved %d actions and took the distance to the mean from %.3f to %.3f: %v", round, len(acts), d, after, acts)
			}
		}
	})
}

// No oscillation: with every report off by up to ±10 % in every round, a
// balanced cluster makes few moves over 1,000 planning rounds, and no
// copy goes back to a node it left.
func TestNoisyReportsDoNotOscillate(t *testing.T) {
	c := bootstrap(t, 256, 3, nodes(10))
	w := newLoadWorld(t, c, 3)
	w.zipf(1.1, 10000)
	w.replicaShare = 0.5
	pol := DefaultLoadPolicy() // five minutes of hysteresis; one round a second
	w.settle(noHysteresis(), DefaultLimits(), true)
	settledMoves, settledPromos := w.moves, w.promos
	w.noise = 0.10
	gone := newDepartures(c)
	for round := 0; round < 1000; round++ {
		before, now := placementOf(c), w.now
		w.round(pol, DefaultLimits(), true)
		for _, back := range gone.record(before, placementOf(c), now, 1<<62) {
			t.Error(back)
		}
	}
	moves, promos := w.moves-settledMoves, w.promos-settledPromos
	t.Logf("balanced in %d moves and %d promotions; then over 1,000 noisy rounds %d moves and %d promotions", settledMoves, settledPromos, moves, promos)
	// Each partition may move once per hysteresis (300 rounds), so up to
	// 3 × 256 moves would fit; noise at the band's edges makes a few.
	if moves > 256/4 || promos > 256/4 {
		t.Errorf("noisy reports made %d moves and %d promotions over 1,000 rounds, want at most %d of each", moves, promos, 256/4)
	}
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

// Load stories, with their transcripts in testdata/load_*.golden.
func TestLoadScenariosGolden(t *testing.T) {
	type loadScenario struct {
		name  string
		rf    int
		parts int
		nodes int
		setup func(w *loadWorld)
	}
	scenarios := []loadScenario{
		{name: "load_disk_full", rf: 2, parts: 12, nodes: 4, setup: func(w *loadWorld) {
			for i := range w.size {
				w.size[i] = int64(100 * (1 + i%3))
			}
			for _, id := range w.c.MemberIDs() {
				w.capacity[id] = 10000
			}
			w.extra["n01"] = 9400 // over -disk-full once its copies count
			w.extra["n03"] = 9000 // over -disk-high
		}},
		{name: "load_hot_primary", rf: 3, parts: 20, nodes: 5, setup: func(w *loadWorld) {
			// p0 is hot; one of its replicas serves nothing else.
			w.replicaShare = 0.1
			idle := w.c.Partitions[0].Replicas[0]
			for i, p := range w.c.Partitions {
				if w.load[i] = 20; p.Holds(idle) {
					w.load[i] = 0
				}
			}
			w.load[0] = 100
		}},
		{name: "load_zipf", rf: 2, parts: 32, nodes: 5, setup: func(w *loadWorld) {
			w.replicaShare = 0.5
			w.zipf(1.1, 1000)
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := bootstrap(t, sc.parts, sc.rf, nodes(sc.nodes))
			w := newLoadWorld(t, c, 1)
			sc.setup(w)
			s := &story{t: t, c: c}
			s.logf("# %s: %d partitions, RF %d, %d nodes", sc.name, sc.parts, sc.rf, sc.nodes)
			w.logLoads(s)
			for round := 1; ; round++ {
				if round > 50 {
					t.Fatal("no convergence after 50 rounds")
				}
				acts := w.round(noHysteresis(), DefaultLimits(), true)
				if acts == nil {
					break
				}
				s.actions(fmt.Sprintf("round %d", round), acts)
			}
			s.logf("## converged: %d copies moved, %d promotions", w.moves, w.promos)
			w.logLoads(s)
			checkGolden(t, sc.name, s.out.Bytes())
		})
	}
}

// logLoads writes each node's copies, primaries, true load and disk use.
func (w *loadWorld) logLoads(s *story) {
	loads := w.nodeLoads()
	use := w.diskUse()
	copies, prims := counts(w.c)
	for _, id := range sortedIDs(loads) {
		line := fmt.Sprintf("%s copies=%-2d primaries=%-2d load=%7.1f", id, copies[id], prims[id], loads[id])
		if u, ok := use[id]; ok {
			line += fmt.Sprintf(" disk=%5.1f%%", 100*u)
		}
		s.logf("%s", line)
	}
	s.logf("load max/mean %.3f", loadMaxOverMean(loads))
}

func TestLoadPolicyValidate(t *testing.T) {
	if err := DefaultLoadPolicy().Validate(); err != nil {
		t.Fatalf("default policy: %v", err)
	}
	bad := []LoadPolicy{
		{DiskFull: 1.2, DiskHigh: 0.9, BandRatio: 0.05},
		{DiskFull: 0.9, DiskHigh: 0.95, BandRatio: 0.05},
		{DiskFull: 0.95, DiskHigh: 0.9, BandRatio: -1},
		{DiskFull: 0.95, DiskHigh: 0.9, BandRatio: 0.05, Hysteresis: -time.Second},
	}
	for _, pol := range bad {
		if err := pol.Validate(); err == nil {
			t.Errorf("%+v: no error", pol)
		}
	}
}

// The disk thrash rapid found (sizes 1, 1, 2 and 3 on four nodes in
// three zones, RF 3, one disk 90 % full of something else): the full node sheds its copies, and
// a count move, blind to sizes, gave it one back past -disk-high, which it
// shed again, and so on. A count move now weighs the copy against the
// target's room: the node ends under -disk-full, no copy goes to a node it
// takes over -disk-high, and the planner stops.
func TestACountMoveDoesNotRefillADiskThatShed(t *testing.T) {
	c := bootstrap(t, 4, 3, zoned(4, "a", "b", "c"))
	checkNoDiskRefill(t, c, []int64{1, 1, 2, 3}, "n02")
}

// The same with two resources, where each resource is balanced to its own
// per-node targets, and those moves weigh the copy against the target's
// room too.
func TestAPerResourceMoveDoesNotRefillADiskThatShed(t *testing.T) {
	c := bootstrap(t, 4, 3, zoned(4, "a", "b", "c"))
	createResource(t, c, "orders", 4, 3)
	checkNoDiskRefill(t, c, []int64{1, 1, 2, 3, 3, 2, 1, 1}, "n02")
}

// checkNoDiskRefill plans rounds with node full's disk 90 % full of
// something else, and partitions of the given sizes, until the planner
// stops (50 rounds at most): no copy may take a node over -disk-high, no
// copy that left the full node may come back to it, and it ends under
// -disk-full.
func checkNoDiskRefill(t *testing.T, c *Cluster, sizes []int64, full string) {
	t.Helper()
	w := newLoadWorld(t, c, 1)
	copy(w.size, sizes)
	var total int64
	for _, s := range w.size {
		total += 3 * s
	}
	for _, id := range c.MemberIDs() {
		w.capacity[id] = 3 * total
	}
	w.extra[full] = w.capacity[full] * 90 / 100
	left := map[int]bool{} // the partitions whose copy left the full node
	for round := 0; ; round++ {
		if round > 50 {
			t.Fatalf("the planner still moves copies after %d rounds", round)
		}
		before := w.diskUse()
		acts := w.round(noHysteresis(), DefaultLimits(), true)
		after := w.diskUse()
		for _, a := range acts {
			if a.Kind != ActionStartMigration {
				continue
			}
			if after[a.Node] > 0.925 && after[a.Node] > before[a.Node] {
				t.Errorf("round %d: a copy of p%d went to %s, taking it to %.1f%% of its disk", round, a.Partition, a.Node, 100*after[a.Node])
			}
			if a.Replaces == full {
				left[a.Partition] = true
			}
			if a.Node == full && left[a.Partition] {
				t.Errorf("round %d: the copy of p%d %s shed came back to it: %q", round, a.Partition, full, a.Reasons)
			}
		}
		if acts == nil {
			break
		}
	}
	if u := w.diskUse()[full]; u > 0.95 {
		t.Errorf("%s ends at %.1f%% of its disk, over -disk-full", full, 100*u)
	}
}

// Counts first: under load balancing a node back from a failure gets its
// share of copies and primaries at once (within its count band), although
// every partition the failure moved is inside the five-minute hysteresis.
func TestARejoinedNodeGetsItsCountsBackDespiteTheLoadHysteresis(t *testing.T) {
	c := bootstrap(t, 40, 3, nodes(5))
	w := newLoadWorld(t, c, 5)
	w.replicaShare = 0.5
	w.zipf(1.1, 1000)
	for i := range w.size {
		w.size[i] = int64(1000 + 37*i)
	}
	w.settle(noHysteresis(), DefaultLimits(), true)
	pol := DefaultLoadPolicy() // five minutes; a round is a second

	back := "n05"
	applyOK(t, c, Command{Kind: CmdSetStatus, At: int64(w.now), Node: back, Status: StatusFailed, Actions: PlanFailure(c, back, 1)})
	w.settle(pol, DefaultLimits(), true)
	if copies, _ := counts(c); copies[back] != 0 {
		t.Fatalf("%s still holds %d copies while failed", back, copies[back])
	}
	m := c.Members[back]
	applyOK(t, c, Command{Kind: CmdUpsertMember, At: int64(w.now), Member: &m})
	rounds := w.settle(pol, DefaultLimits(), true)

	// 120 copies and 40 primaries over 5 nodes: shares 24 and 8, bands of
	// at least two either side under load balancing.
	copies, prims := counts(c)
	if copies[back] < 22 || prims[back] < 6 {
		t.Errorf("after %d rounds (seconds) %s holds %d copies and leads %d, want at least 22 and 6: %v %v", rounds, back, copies[back], prims[back], copies, prims)
	}
	if w.now > pol.Hysteresis {
		t.Errorf("the counts came back only after %v, past the %v hysteresis", w.now, pol.Hysteresis)
	}
}

// No back and forth: with every report off by up to ±10 % in every round,
// whatever the loads and sizes, no copy goes back to a node it left
// within the hysteresis.
func TestNoCopyReturnsWithinTheHysteresisUnderNoisyReports(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 8).Draw(rt, "nodes")
		c := bootstrapFor(rt, rapid.IntRange(8, 64).Draw(rt, "partitions"), rapid.IntRange(1, 3).Draw(rt, "rf"), nodes(n))
		w := newLoadWorld(rt, c, rapid.Int64().Draw(rt, "seed"))
		w.replicaShare = rapid.Float64Range(0, 1).Draw(rt, "replica share")
		w.zipf(rapid.Float64Range(0.5, 2).Draw(rt, "s"), 1000)
		for i := range w.size {
			w.size[i] = int64(rapid.IntRange(0, 1000).Draw(rt, "size"))
		}
		w.noise = 0.10
		pol := DefaultLoadPolicy()
		pol.Hysteresis = time.Minute
		gone := newDepartures(c)
		for round := 0; round < 300; round++ {
			before, now := placementOf(c), w.now
			w.round(pol, DefaultLimits(), true)
			if back := gone.record(before, placementOf(c), now, pol.Hysteresis); len(back) > 0 {
				rt.Fatalf("%s", back[0])
			}
		}
	})
}

// Load moves keep the primary counts within their widened band even while
// the copies they started are in flight: the target of a migration that
// replaces a primary leads once it completes, and a plan made before it
// does must count it so (an e2e run saw two such moves in consecutive plans
// take a node two primaries past its band, and the count balancing undo
// the promotion for load made just before).
func TestLoadMovesInFlightKeepThePrimaryBands(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(3, 6).Draw(rt, "nodes")
		parts := rapid.IntRange(8, 40).Draw(rt, "partitions")
		c := bootstrapFor(rt, parts, rapid.IntRange(2, 3).Draw(rt, "rf"), nodes(n))
		w := newLoadWorld(rt, c, 1)
		w.replicaShare = rapid.Float64Range(0, 0.5).Draw(rt, "replica share")
		for i := range w.load {
			w.load[i] = rapid.Float64Range(0, 100).Draw(rt, "load")
		}
		share := float64(parts) / float64(n)
		slack := int(math.Max(0.05*share, 2))
		lo, hi := int(math.Floor(share))-slack, int(math.Ceil(share))+slack
		for round := 0; round < 40; round++ {
			acts := Plan(w.input(noHysteresis(), DefaultLimits(), true))
			w.now += time.Second
			if len(acts) > 0 {
				applyOK(rt, c, Command{Kind: CmdApplyActions, At: int64(w.now), Actions: acts})
			}
			if rapid.Bool().Draw(rt, "acknowledge") {
				if acks := AcknowledgeAll(c); len(acks) > 0 {
					applyOK(rt, c, Command{Kind: CmdApplyActions, At: int64(w.now), Actions: acks})
				}
			}
			leads := map[string]int{}
			for _, p := range c.Partitions {
				leader := p.Primary
				for _, m := range p.Migrations {
					if m.Replaces != "" && m.Replaces == p.Primary {
						leader = m.Target
					}
				}
				leads[leader]++
			}
			for _, id := range c.MemberIDs() {
				if l := leads[id]; l < lo || l > hi {
					rt.Fatalf("round %d: %s leads %d once its copies in flight complete, outside [%d, %d]: %v", round, id, l, lo, hi, acts)
				}
			}
		}
	})
}

// A report that lapses changes no placement: a cluster balanced by load
// (counts within the wide bands, not exact) plans nothing when one node's
// report is missing for a while (a new node, an app restarting). Before,
// the planner went back to the exact count bands for as long, and its
// count moves undid the placement for load.
func TestALapsedReportDoesNotUndoTheLoadPlacement(t *testing.T) {
	c := bootstrap(t, 64, 3, nodes(6))
	w := newLoadWorld(t, c, 7)
	w.replicaShare = 0.5
	w.zipf(1.1, 1000)
	w.settle(noHysteresis(), DefaultLimits(), true)
	copies, prims := counts(c)
	exact := true
	for _, id := range c.MemberIDs() {
		exact = exact && (copies[id] == 32 || copies[id] == 33) && (prims[id] == 10 || prims[id] == 11)
	}
	if exact {
		t.Fatalf("balancing by load left the counts exact (%v, %v): the scenario proves nothing", copies, prims)
	}
	w.silent["n03"] = true
	if acts := Plan(w.input(DefaultLoadPolicy(), DefaultLimits(), true)); len(acts) > 0 {
		t.Errorf("with n03's report missing, the planner moves %d copies or primaries: %v", len(acts), acts)
	}
}
