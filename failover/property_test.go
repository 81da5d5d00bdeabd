package failover

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"

	"pgregory.net/rapid"
)

// sim is a cluster under a random sequence of membership events.
type sim struct {
	t        *rapid.T
	c        *Cluster
	now      int64
	next     int
	zones    []string
	weighted bool
	limits   Limits
	moves    int // copies started by the last settle
}

func (s *sim) step() { s.now += 1000 }

func (s *sim) apply(cmd Command) {
	s.t.Helper()
	if _, err := s.c.Apply(cmd); err != nil {
		s.t.Fatalf("apply %s: %v", cmd.Kind, err)
	}
	if err := s.c.Validate(); err != nil {
		s.t.Fatalf("after %s: %v", cmd.Kind, err)
	}
}

// settle plans and applies until the plan is empty, acknowledging copies at
// once, checking on the way that epochs never go down and that Plan is
// deterministic. It counts the copies started in s.moves.
func (s *sim) settle() {
	s.t.Helper()
	s.moves = 0
	for round := 0; ; round++ {
		if round > 2000 {
			s.t.Fatalf("no convergence after %d rounds", round)
		}
		in := PlanInput{Cluster: s.c, Ages: AgesAt(s.c, s.now), Seed: int64(round), Limits: s.limits}
		actions := Plan(in)
		if again := Plan(in); !reflect.DeepEqual(actions, again) {
			s.t.Fatalf("Plan is not deterministic:\n%v\n%v", actions, again)
		}
		if len(actions) == 0 {
			return
		}
		seen := map[int]bool{}
		for _, a := range actions {
			if seen[a.Partition] {
				s.t.Fatalf("two actions for partition %d in one plan", a.Partition)
			}
			seen[a.Partition] = true
			if a.Kind == ActionStartMigration {
				s.moves++
			}
		}
		before := epochs(s.c)
		res, err := s.c.Apply(Command{Kind: CmdApplyActions, At: s.now, Actions: actions})
		if err != nil {
			s.t.Fatal(err)
		}
		if res.Stale != 0 {
			s.t.Fatalf("%d of a fresh plan's actions were stale: %v", res.Stale, actions)
		}
		if acks := AcknowledgeAll(s.c); len(acks) > 0 {
			s.apply(Command{Kind: CmdApplyActions, At: s.now, Actions: acks})
		}
		checkEpochs(s.t, before, s.c)
		s.step()
	}
}

func epochs(c *Cluster) []uint64 {
	out := make([]uint64, len(c.Partitions))
	for i, p := range c.Partitions {
		out[i] = p.Epoch
	}
	return out
}

func checkEpochs(t *rapid.T, before []uint64, c *Cluster) {
	t.Helper()
	for i, p := range c.Partitions {
		if p.Epoch < before[i] {
			t.Fatalf("partition %d epoch went down: %d -> %d", i, before[i], p.Epoch)
		}
	}
}

func (s *sim) pick(label string, ok func(Member) bool) (string, bool) {
	var ids []string
	for _, id := range s.c.MemberIDs() {
		if ok(s.c.Members[id]) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", false
	}
	return rapid.SampledFrom(ids).Draw(s.t, label), true
}

func (s *sim) newMember() Member {
	s.next++
	m := Member{ID: fmt.Sprintf("n%02d", s.next), Zone: rapid.SampledFrom(s.zones).Draw(s.t, "zone")}
	if s.weighted {
		m.Weight = rapid.IntRange(1, 3).Draw(s.t, "weight")
	}
	return m
}

func TestPlannerConvergesUnderAnyMembershipHistory(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := &sim{t: rt, now: 1}
		partitions := rapid.OneOf(rapid.IntRange(1, 64), rapid.IntRange(65, 512), rapid.SampledFrom([]int{1000, 4096})).Draw(rt, "partitions")
		rf := rapid.IntRange(1, 5).Draw(rt, "rf")
		s.zones = []string{"a", "b", "c"}[:rapid.IntRange(1, 3).Draw(rt, "zones")]
		s.weighted = rapid.Bool().Draw(rt, "weighted")
		if partitions <= 256 && rapid.Bool().Draw(rt, "throttled") {
			s.limits = DefaultLimits()
		}
		var ms []Member
		for i, n := 0, rapid.IntRange(1, 8).Draw(rt, "initial"); i < n; i++ {
			ms = append(ms, s.newMember())
		}
		s.c = NewCluster()
		s.apply(Command{Kind: CmdBootstrap, At: s.now, Settings: &Settings{Partitions: partitions, ReplicationFactor: rf}, Members: ms})
		s.settle()
		s.check("bootstrap")
		for i, n := 0, rapid.IntRange(1, 8).Draw(rt, "events"); i < n; i++ {
			s.step()
			switch rapid.SampledFrom([]string{"join", "join", "fail", "leave", "rejoin", "unhealthy", "healthy", "lose", "forget"}).Draw(rt, "event") {
			case "join":
				if len(s.c.Members) >= 20 {
					continue
				}
				before, _ := counts(s.c)
				m := s.newMember()
				s.apply(Command{Kind: CmdUpsertMember, At: s.now, Member: &m})
				s.settle()
				s.check("join " + m.ID)
				s.checkJoinOptimum(before, m.ID)
			case "fail":
				id, ok := s.pick("failed", Member.CanHold)
				if !ok {
					continue
				}
				s.apply(Command{Kind: CmdSetStatus, At: s.now, Node: id, Status: StatusFailed, Actions: PlanFailure(s.c, id, 3)})
				s.settle()
				s.check("fail " + id)
			case "leave":
				id, ok := s.pick("leaving", Member.CanHold)
				if !ok {
					continue
				}
				s.apply(Command{Kind: CmdSetStatus, At: s.now, Node: id, Status: StatusLeaving, Actions: PlanStatus(s.c, id, StatusLeaving, 3)})
				s.settle()
				s.check("leaving " + id)
				s.step()
				s.apply(Command{Kind: CmdSetStatus, At: s.now, Node: id, Status: StatusLeft})
				s.settle()
				s.check("left " + id)
			case "rejoin":
				id, ok := s.pick("rejoined", func(m Member) bool { return m.Status == StatusFailed || m.Status == StatusLeft })
				if !ok {
					continue
				}
				m := s.c.Members[id]
				s.apply(Command{Kind: CmdUpsertMember, At: s.now, Member: &m})
				s.settle()
				s.check("rejoin " + id)
			case "lose":
				id, ok := s.pick("lost", Member.CanHold)
				if !ok {
					continue
				}
				s.loseCopies(id)
				s.settle()
				s.check("copies lost by " + id)
			case "forget":
				// agent force-leave, or the reaper: a failed or departed
				// member, possibly still holding copies, is forgotten.
				id, ok := s.pick("forgotten", func(m Member) bool { return m.Status == StatusFailed || m.Status == StatusLeft })
				if !ok {
					continue
				}
				s.apply(Command{Kind: CmdForgetMember, At: s.now, Node: id, Actions: PlanStatus(s.c, id, StatusLeft, 3)})
				s.settle()
				s.check("forget " + id)
				if _, still := s.c.Members[id]; still {
					s.apply(Command{Kind: CmdForgetMember, At: s.now, Node: id})
					if _, still := s.c.Members[id]; still && s.c.checkHoldsNothing(id) == nil {
						s.t.Fatalf("%s holds nothing but was not forgotten", id)
					}
					s.check("forget again " + id)
				}
			case "unhealthy", "healthy":
				sick := rapid.Bool().Draw(rt, "sick")
				id, ok := s.pick("app", func(m Member) bool { return m.CanHold() && m.AppUnhealthy != sick })
				if !ok {
					continue
				}
				s.apply(Command{Kind: CmdSetAppHealth, At: s.now, Node: id, AppUnhealthy: sick})
				s.settle()
				s.check(fmt.Sprintf("app unhealthy=%v %s", sick, id))
			}
		}
	})
}

// loseCopies has id's app report that it lost some of the partitions it
// holds (as after a wiped data dir), and checks the drop: id holds none of
// them any more, and a partition is marked DataLost exactly when no other
// holder that may have the data is left.
func (s *sim) loseCopies(id string) {
	t, c := s.t, s.c
	t.Helper()
	var held []int
	for _, p := range c.Partitions {
		if p.Holds(id) {
			held = append(held, p.ID)
		}
	}
	if len(held) == 0 {
		return
	}
	lost := rapid.SliceOfNDistinct(rapid.SampledFrom(held), 1, len(held), rapid.ID[int]).Draw(t, "lost partitions")
	wantLost := map[int]bool{}
	for _, pid := range lost {
		wantLost[pid] = !c.othersHaveData(&c.Partitions[pid], id)
	}
	acts := PlanLostCopies(c, id, lost)
	if len(acts) != len(lost) {
		t.Fatalf("%d drops planned for %d lost copies", len(acts), len(lost))
	}
	before := epochs(c)
	s.apply(Command{Kind: CmdCopiesLost, At: s.now, Node: id, Actions: acts})
	checkEpochs(t, before, c)
	for _, pid := range lost {
		p := c.Partitions[pid]
		if p.Holds(id) {
			t.Fatalf("partition %d still held by %s after its app lost it", pid, id)
		}
		if p.DataLost != wantLost[pid] {
			t.Fatalf("partition %d: DataLost %v, want %v", pid, p.DataLost, wantLost[pid])
		}
	}
}

// check asserts the converged invariants.
func (s *sim) check(after string) {
	t, c := s.t, s.c
	t.Helper()
	for seed := int64(100); seed < 103; seed++ {
		if a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, s.now), Seed: seed, Limits: s.limits}); len(a) != 0 {
			t.Fatalf("after %s: converged state plans %v", after, a)
		}
	}
	var take, lead, hold []string
	unhealthy := false
	zonesWithTakers := map[string]bool{}
	for _, id := range c.MemberIDs() {
		m := c.Members[id]
		if m.CanHold() {
			hold = append(hold, id)
			if m.AppUnhealthy {
				unhealthy = true
			}
		}
		if m.CanLead() {
			lead = append(lead, id)
			take = append(take, id)
			zonesWithTakers[m.Zone] = true
		}
	}
	rf := c.Settings.ReplicationFactor
	lost := 0
	for _, p := range c.Partitions {
		if p.DataLost {
			// Never an invented primary or copy: nothing is planned for it.
			if p.Primary != "" || len(p.Migrations) != 0 {
				t.Fatalf("after %s: lost partition %d has primary %q and %d migrations", after, p.ID, p.Primary, len(p.Migrations))
			}
			for _, h := range p.Holders() {
				if c.Members[h].CanHold() {
					t.Fatalf("after %s: lost partition %d has a live holder %s that was not promoted", after, p.ID, h)
				}
			}
			lost++
			continue
		}
		switch {
		case len(lead) > 0:
			if m, ok := c.Members[p.Primary]; !ok || !m.CanLead() {
				t.Fatalf("after %s: partition %d primary %q is not a live app-healthy node", after, p.ID, p.Primary)
			}
		case len(hold) > 0:
			if m, ok := c.Members[p.Primary]; !ok || !m.CanHold() {
				t.Fatalf("after %s: partition %d primary %q is not live", after, p.ID, p.Primary)
			}
		}
		if len(take) >= rf {
			if h := p.Holders(); len(h) != rf {
				t.Fatalf("after %s: partition %d has %d copies %v, want %d", after, p.ID, len(h), h, rf)
			}
		}
		for _, h := range p.Holders() {
			if len(take) >= rf && !c.Members[h].CanHold() {
				t.Fatalf("after %s: partition %d still held by %s (%s)", after, p.ID, h, c.Members[h].Status)
			}
		}
		if !unhealthy && len(take) >= rf {
			zs := map[string]bool{}
			for _, h := range p.Holders() {
				zs[c.Members[h].Zone] = true
			}
			want := min(rf, len(zonesWithTakers))
			if len(zs) < want {
				t.Fatalf("after %s: partition %d spans zones %v, want %d zones", after, p.ID, zs, want)
			}
		}
	}
	if unhealthy || len(take) == 0 {
		return
	}
	// Balance against the documented shares.
	copies, prims := counts(c)
	b := Balance(c)
	for _, nb := range b.Nodes {
		m := c.Members[nb.ID]
		if !m.CanLead() {
			continue
		}
		if math.Abs(float64(copies[nb.ID])-nb.CopyShare) >= 1 {
			t.Fatalf("after %s: %s holds %d copies, share %.3f", after, nb.ID, copies[nb.ID], nb.CopyShare)
		}
		if math.Abs(float64(prims[nb.ID])-nb.PrimaryShare) >= 1 {
			t.Fatalf("after %s: %s leads %d, share %.3f (report %+v)", after, nb.ID, prims[nb.ID], nb.PrimaryShare, b.Nodes)
		}
	}
	// Independently of the planner's share computation: with one zone the
	// share is total × weight / weight sum, capped at one copy per partition.
	if len(zonesWithTakers) == 1 {
		k := min(rf, len(take))
		w := make([]float64, len(take))
		for i, id := range take {
			w[i] = float64(c.Members[id].EffectiveWeight())
		}
		holdable := len(c.Partitions) - lost
		share := cappedShares(float64(holdable*k), w, float64(holdable))
		for i, id := range take {
			if math.Abs(float64(copies[id])-share[i]) >= 1 {
				t.Fatalf("after %s: %s holds %d copies, weighted share %.3f", after, id, copies[id], share[i])
			}
		}
		if !s.weighted {
			mean := float64(holdable) / float64(len(take))
			for _, id := range take {
				if math.Abs(float64(prims[id])-mean) >= 1 {
					t.Fatalf("after %s: %s leads %d, mean %.3f", after, id, prims[id], mean)
				}
			}
		}
	}
}

// cappedShares splits total in proportion to w with each share at most cap,
// by repeatedly pinning the shares that exceed cap.
func cappedShares(total float64, w []float64, cap float64) []float64 {
	out := make([]float64, len(w))
	pinned := make([]bool, len(w))
	for {
		rest, ws := total, 0.0
		for i := range w {
			if pinned[i] {
				rest -= cap
			} else {
				ws += w[i]
			}
		}
		again := false
		for i := range w {
			if pinned[i] {
				out[i] = cap
				continue
			}
			out[i] = rest * w[i] / ws
			if out[i] > cap {
				pinned[i], again = true, true
			}
		}
		if !again {
			return out
		}
	}
}

// checkJoinOptimum: with equal weights and one zone, a join into a balanced
// cluster moves exactly the optimum: the copies above their new quota, with
// the larger quotas given to the nodes that hold the most.
func (s *sim) checkJoinOptimum(before map[string]int, joined string) {
	t, c := s.t, s.c
	if s.weighted || len(s.zones) > 1 {
		return
	}
	var loads []int
	for _, id := range c.MemberIDs() {
		m := c.Members[id]
		if !m.CanHold() {
			continue
		}
		if m.AppUnhealthy {
			return
		}
		loads = append(loads, before[id])
	}
	if len(loads)-1 < c.Settings.ReplicationFactor {
		return // the join raised the copy count: copies are added, not moved
	}
	want := optimumMoves(loads)
	if s.moves != want {
		t.Fatalf("join of %s moved %d copies, optimum %d (loads before %v)", joined, s.moves, want, loads)
	}
}

// optimumMoves is the fewest copies that must move to bring loads (equal
// weights) within one of their mean: the r = total mod n largest loads may
// keep ceil(mean) = q+1, the rest q; whatever is above that must move.
func optimumMoves(loads []int) int {
	total := 0
	for _, l := range loads {
		total += l
	}
	n := len(loads)
	q, r := total/n, total%n
	sorted := append([]int(nil), loads...)
	sort.Sort(sort.Reverse(sort.IntSlice(sorted)))
	moves := 0
	for i, l := range sorted {
		quota := q
		if i < r {
			quota++
		}
		if l > quota {
			moves += l - quota
		}
	}
	return moves
}
