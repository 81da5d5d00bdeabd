package failover

import (
	"reflect"
	"testing"
)

// Each decision weighs its criteria in order, and the first that tells two
// candidates apart decides.
func TestDecisionsWeighTheirCriteriaInOrder(t *testing.T) {
	node := func(id string, load, quota, weight int) candidate {
		return candidate{id: id, part: 7, tie: hashString(id), load: load, quota: quota, weight: weight, zoneOK: true}
	}
	crowded := func(c candidate) candidate { c.zoneOK = false; return c }
	cases := []struct {
		name      string
		d         decision
		a, b      candidate
		winner    string // "" when the decision cannot tell them apart
		decidedBy criterion
	}{
		{"a copy goes where the zone spread holds, even to a fuller node",
			placing, node("full", 9, 9, 1), crowded(node("empty", 0, 9, 1)), "full", byZoneSpread},
		{"then to the node with more room below its quota",
			placing, node("n1", 5, 9, 1), node("n2", 7, 9, 1), "n1", byRoom},
		{"then to the node with fewer copies per unit of weight",
			placing, node("heavy", 4, 6, 2), node("light", 3, 5, 1), "heavy", byLoadPerWeight},
		{"a rebalancing move does not weigh zones: the spread is checked before",
			rebalancing, crowded(node("n1", 5, 9, 1)), node("n2", 7, 9, 1), "n1", byRoom},
		{"a replica becomes primary by room below its primary quota",
			leading, node("n1", 2, 3, 1), node("n2", 3, 3, 1), "n1", byRoom},
		{"and weight does not count there: equal room goes to the seed",
			leading, node("heavy", 4, 6, 2), node("light", 3, 5, 1), seedWinner(node("heavy", 4, 6, 2), node("light", 3, 5, 1)), bySeed},
		{"a surplus copy is dropped by the node furthest above its quota",
			dropping, node("over", 12, 9, 1), node("near", 10, 9, 1), "over", byRoom},
		{"and between equals by the lowest ID, the seed aside",
			dropping, node("n2", 10, 9, 1), node("n1", 10, 9, 1), "n1", byID},
		{"the initial table deals a copy to the zone that lacks more",
			initialCopy, withZoneRoom(node("n1", 0, 5, 1), 1), withZoneRoom(node("n2", 0, 9, 1), 4), "n2", byZoneRoom},
		{"equal holders of an initial partition keep their order",
			initialPrimary, node("n2", 1, 3, 1), node("n1", 1, 3, 1), "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, by := tc.a.compare(&tc.b, &tc.d)
			back, byBack := tc.b.compare(&tc.a, &tc.d)
			if s != -back || by != byBack {
				t.Fatalf("compare is not antisymmetric: %d by %s, reversed %d by %s", s, by, back, byBack)
			}
			winner := ""
			switch {
			case s > 0:
				winner = tc.a.id
			case s < 0:
				winner = tc.b.id
			}
			if winner != tc.winner || by != tc.decidedBy {
				t.Fatalf("%q won by %s, want %q by %s", winner, by, tc.winner, tc.decidedBy)
			}
		})
	}
}

func withZoneRoom(c candidate, room int) candidate { c.zoneRoom = room; return c }

// seedWinner is the candidate the seeded tie-break prefers, computed apart
// from compare.
func seedWinner(a, b candidate) string {
	if mix(a.tie, uint64(a.part)) < mix(b.tie, uint64(b.part)) {
		return a.id
	}
	return b.id
}

// The seed breaks ties and nothing else: two candidates equal on every
// other criterion swap places when their tie-breaks swap.
func TestSeedDecidesOnlyBetweenEquals(t *testing.T) {
	a := candidate{id: "n1", part: 3, tie: mix(1, hashString("n1")), load: 4, quota: 5, weight: 1, zoneOK: true}
	b := a
	b.id, b.tie = "n2", mix(1, hashString("n2"))
	first := a.beats(&b, &placing)
	a.tie, b.tie = b.tie, a.tie
	if a.beats(&b, &placing) == first {
		t.Fatalf("swapping the seeded tie-breaks did not swap the winner")
	}
	b.load = 5 // now b has less room: the seed no longer matters
	if !a.beats(&b, &placing) || !a.beats(&b, &leading) {
		t.Fatalf("a candidate with more room lost on the seed")
	}
}

// What an action says of its node comes from the chosen candidate: its load
// against its share, a last resort, and how the zone spread went when the
// decision weighs it in a cluster of several zones.
func TestReasonsAreWordedFromTheCandidate(t *testing.T) {
	c := candidate{id: "n05", load: 9, quota: 9, share: 18, zone: "b", zoned: true, zoneOK: true}
	cases := []struct {
		name string
		c    candidate
		d    decision
		want []string
	}{
		{"a placement in a zone that keeps the spread", c, placing,
			[]string{"n05 holds 9 (share 18.0)", `zone spread: zone "b"`}},
		{"a placement that cannot keep the spread", withZoneOK(c, false), placing,
			[]string{"n05 holds 9 (share 18.0)", "zone spread impossible"}},
		{"a placement on an app-unhealthy node, for want of another", lastResort(c), placing,
			[]string{"n05 holds 9 (share 18.0)", "no app-healthy node can take it: n05 (app-unhealthy) keeps the data", `zone spread: zone "b"`}},
		{"one zone: nothing to say of the spread", unzoned(c), placing,
			[]string{"n05 holds 9 (share 18.0)"}},
		{"a rebalancing move does not weigh zones", c, rebalancing,
			[]string{"n05 holds 9 copies (share 18.0)"}},
		{"a surplus copy dropped", c, dropping,
			[]string{"n05 holds 9 (quota 9)"}},
		{"a promotion", candidate{id: "n06", load: 3, share: 3.6}, leading,
			[]string{"n06 leads 3 (share 3.6)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.appendReasons(nil, tc.d); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("reasons %q, want %q", got, tc.want)
			}
		})
	}
}

func withZoneOK(c candidate, ok bool) candidate { c.zoneOK = ok; return c }
func lastResort(c candidate) candidate          { c.lastResort = true; return c }
func unzoned(c candidate) candidate             { c.zoned = false; return c }
