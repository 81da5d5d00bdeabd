package control

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestPromotionCandidatesAreAskedForOnlyWhenAPromotionIsDue(t *testing.T) {
	const stable = 10 * time.Second
	server := func(id string, voter, healthy bool, stableFor time.Duration) ServerHealth {
		return ServerHealth{ID: id, Voter: voter, InService: true, Healthy: healthy, StableFor: stableFor}
	}
	cases := []struct {
		name    string
		servers []ServerHealth
		target  int
		want    []string
	}{
		{
			name: "voters at the target: nobody is asked",
			servers: []ServerHealth{server("a", true, true, time.Minute), server("b", true, true, time.Minute), server("c", true, true, time.Minute),
				server("d", false, true, time.Minute), server("e", false, true, time.Minute)},
			target: 3,
		},
		{
			name: "voters above the target: nobody is asked",
			servers: []ServerHealth{server("a", true, true, time.Minute), server("b", true, true, time.Minute), server("c", true, true, time.Minute),
				server("d", false, true, time.Minute)},
			target: 1,
		},
		{
			name: "one voter short: the healthy, stable non-voters, by ID",
			servers: []ServerHealth{server("a", true, true, time.Minute), server("b", true, true, time.Minute),
				server("z", false, true, time.Minute), server("d", false, false, time.Minute), server("e", false, true, stable-time.Second), server("f", false, true, stable)},
			target: 3,
			want:   []string{"f", "z"},
		},
		{
			name:    "a suspect voter keeps the target: nobody is asked",
			servers: []ServerHealth{server("a", true, true, time.Minute), server("b", true, false, 0), server("c", true, true, time.Minute), server("d", false, true, time.Minute)},
			target:  3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PromotionCandidates(tc.servers, tc.target, stable); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("PromotionCandidates = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanVoters(t *testing.T) {
	const stable = 10 * time.Second
	// ready is a healthy, caught-up server, stable for long enough.
	ready := func(id string, voter bool) ServerHealth {
		return ServerHealth{ID: id, Voter: voter, InService: true, Healthy: true, CaughtUp: true, StableFor: time.Minute}
	}
	with := func(s ServerHealth, f func(*ServerHealth)) ServerHealth { f(&s); return s }

	cases := []struct {
		name    string
		servers []ServerHealth
		target  int
		promote []string
		demote  []string
	}{
		{
			name:    "three voters of three: nothing to do",
			servers: []ServerHealth{ready("a", true), ready("b", true), ready("c", true)},
			target:  5,
		},
		{
			name:    "a fourth server does not make four voters",
			servers: []ServerHealth{ready("a", true), ready("b", true), ready("c", true), ready("d", false)},
			target:  5,
		},
		{
			name:    "five healthy: promote two, lowest IDs first",
			servers: []ServerHealth{ready("a", true), ready("b", true), ready("c", true), ready("e", false), ready("d", false), ready("f", false)},
			target:  5,
			promote: []string{"d", "e"},
		},
		{
			name: "only healthy, caught-up, stable non-voters are promoted",
			servers: []ServerHealth{
				ready("a", true), ready("b", true), ready("c", true),
				with(ready("d", false), func(s *ServerHealth) { s.Healthy = false }),
				with(ready("e", false), func(s *ServerHealth) { s.CaughtUp = false }),
				with(ready("f", false), func(s *ServerHealth) { s.StableFor = stable - time.Second }),
				ready("g", false),
			},
			target:  5,
			promote: []string{"g"},
		},
		{
			name:    "target caps promotions",
			servers: []ServerHealth{ready("a", true), ready("b", false), ready("c", false), ready("d", false), ready("e", false)},
			target:  3,
			promote: []string{"b", "c"},
		},
		{
			name:    "a lone server is one voter",
			servers: []ServerHealth{ready("a", false)},
			target:  5,
			promote: []string{"a"},
		},
		{
			name: "one in service of three: never demote below one voter, and the leader never",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				with(ready("b", true), func(s *ServerHealth) { s.InService = false }),
				with(ready("c", true), func(s *ServerHealth) { s.InService, s.Healthy = false, false }),
			},
			target: 5,
			demote: []string{"b", "c"},
		},
		{
			name: "a suspected voter of three demotes nobody",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				ready("b", true),
				with(ready("c", true), func(s *ServerHealth) { s.Healthy = false }),
			},
			target: 5,
		},
		{
			name: "two suspected voters of five (a cut-off minority) demote nobody",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				ready("b", true), ready("c", true),
				with(ready("d", true), func(s *ServerHealth) { s.Healthy = false }),
				with(ready("e", true), func(s *ServerHealth) { s.Healthy, s.CaughtUp = false, false }),
			},
			target: 5,
		},
		{
			name: "a failed voter is demoted first, then one more to keep the count odd",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				ready("b", true), ready("c", true), ready("d", true),
				with(ready("e", true), func(s *ServerHealth) { s.InService, s.Healthy = false, false }),
			},
			target: 5,
			demote: []string{"e", "b"},
		},
		{
			name: "the rejoined member back in service after a heal: voters restored",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				ready("b", false), ready("c", true), ready("d", true), ready("e", false),
			},
			target:  5,
			promote: []string{"b", "e"},
		},
		{
			name: "in service but not yet stable after a heal: not promoted yet, nobody demoted",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				ready("c", true), ready("d", true),
				with(ready("e", false), func(s *ServerHealth) { s.StableFor = 0 }),
			},
			target: 5,
		},
		{
			name: "target lowered: demote out of service, then unhealthy, then lagging, then by ID",
			servers: []ServerHealth{
				ready("a", true),
				with(ready("b", true), func(s *ServerHealth) { s.Leader = true }),
				ready("c", true),
				with(ready("d", true), func(s *ServerHealth) { s.CaughtUp = false }),
				with(ready("e", true), func(s *ServerHealth) { s.Healthy = false }),
				with(ready("f", true), func(s *ServerHealth) { s.InService = false }),
				ready("g", true),
			},
			target: 3,
			demote: []string{"f", "e", "d", "a"},
		},
		{
			name: "four in service of five voters: three voters are as safe as four",
			servers: []ServerHealth{
				ready("a", true), ready("b", true), ready("c", true), ready("d", true),
				with(ready("e", true), func(s *ServerHealth) { s.InService = false }),
			},
			target: 5,
			demote: []string{"e", "a"},
		},
		{
			name:   "no servers",
			target: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			promote, demote := PlanVoters(tc.servers, tc.target, stable)
			if !reflect.DeepEqual(promote, tc.promote) || !reflect.DeepEqual(demote, tc.demote) {
				t.Fatalf("PlanVoters = promote %v demote %v, want promote %v demote %v", promote, demote, tc.promote, tc.demote)
			}
		})
	}
}

func TestIsCaughtUp(t *testing.T) {
	cases := []struct {
		leader, server, lag uint64
		want                bool
	}{
		{100, 100, 0, true},
		{100, 99, 0, false},
		{100, 90, 10, true},
		{100, 89, 10, false},
		{100, 120, 0, true}, // the leader's figure was fetched a moment earlier
	}
	for _, tc := range cases {
		if got := IsCaughtUp(tc.leader, tc.server, tc.lag); got != tc.want {
			t.Errorf("IsCaughtUp(%d, %d, %d) = %v, want %v", tc.leader, tc.server, tc.lag, got, tc.want)
		}
	}
}

// TestPlanVotersIgnoresSuspicionProperty: for any set of servers, what
// gossip momentarily thinks (Healthy, CaughtUp) never changes how many
// voters are demoted, the leader is never demoted, and a plan never leaves
// fewer voters than the effective target (or one).
func TestPlanVotersIgnoresSuspicionProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(0, 9).Draw(rt, "servers")
		target := rapid.SampledFrom([]int{1, 3, 5, 7}).Draw(rt, "target")
		leader := rapid.IntRange(-1, n-1).Draw(rt, "leader")
		var servers []ServerHealth
		for i := 0; i < n; i++ {
			servers = append(servers, ServerHealth{
				ID:        fmt.Sprintf("s%d", i),
				Voter:     i == leader || rapid.Bool().Draw(rt, "voter"),
				Leader:    i == leader,
				InService: i == leader || rapid.Bool().Draw(rt, "in service"),
				Healthy:   rapid.Bool().Draw(rt, "healthy"),
				CaughtUp:  rapid.Bool().Draw(rt, "caught up"),
				StableFor: time.Duration(rapid.IntRange(0, 20).Draw(rt, "stable s")) * time.Second,
			})
		}
		_, demote := PlanVoters(servers, target, 10*time.Second)

		// The same servers with gossip's view redrawn.
		redrawn := append([]ServerHealth(nil), servers...)
		for i := range redrawn {
			redrawn[i].Healthy = rapid.Bool().Draw(rt, "healthy again")
			redrawn[i].CaughtUp = rapid.Bool().Draw(rt, "caught up again")
		}
		if _, again := PlanVoters(redrawn, target, 10*time.Second); len(again) != len(demote) {
			rt.Fatalf("suspicion changed the demotions: %v then %v", demote, again)
		}

		voters, inService := 0, 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
			if s.InService {
				inService++
			}
		}
		effective := max(1, min(target, inService-(1-inService%2)))
		for _, id := range demote {
			if leader >= 0 && id == servers[leader].ID {
				rt.Fatalf("the leader %s was demoted", id)
			}
		}
		if len(demote) > 0 && voters-len(demote) < effective {
			rt.Fatalf("%d voters demoted to %d, below the effective target %d", voters, voters-len(demote), effective)
		}
	})
}

func TestMaxRemovableVoters(t *testing.T) {
	for voters, want := range map[int]int{-1: 0, 0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 3, 9: 4} {
		if got := MaxRemovableVoters(voters); got != want {
			t.Errorf("MaxRemovableVoters(%d) = %d, want %d", voters, got, want)
		}
	}
}

func TestRemovableVoters(t *testing.T) {
	// at(s): failed s seconds into a 100-second test, looked at its end.
	at := func(sec int) time.Duration { return time.Duration(100-sec) * time.Second }
	five := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name      string
		voters    []string
		failed    []FailedVoter
		minVoters int
		want      []string
	}{
		{"nothing failed", five, nil, 0, []string{}},
		{"one failed voter of five", five, []FailedVoter{{"c", at(1)}}, 0, []string{"c"}},
		{"two of five: both, oldest failure first", five,
			[]FailedVoter{{"a", at(5)}, {"d", at(1)}}, 0, []string{"d", "a"}},
		{"three of five: only the two oldest", five,
			[]FailedVoter{{"a", at(3)}, {"b", at(1)}, {"c", at(2)}}, 0, []string{"b", "c"}},
		{"same failure time: ties broken by ID", five,
			[]FailedVoter{{"e", at(1)}, {"c", at(1)}, {"d", at(1)}}, 0, []string{"c", "d"}},
		{"failed non-voters and unknown IDs are ignored", five,
			[]FailedVoter{{"x", at(0)}, {"b", at(2)}}, 0, []string{"b"}},
		{"duplicates count once", five,
			[]FailedVoter{{"b", at(2)}, {"b", at(1)}}, 0, []string{"b"}},
		{"three voters: one at most", []string{"a", "b", "c"},
			[]FailedVoter{{"a", at(1)}, {"b", at(2)}}, 0, []string{"a"}},
		{"two voters: none, a quorum of two needs both", []string{"a", "b"},
			[]FailedVoter{{"a", at(1)}}, 0, []string{}},
		{"minimum voters caps removals", five,
			[]FailedVoter{{"a", at(1)}, {"b", at(2)}}, 4, []string{"a"}},
		{"minimum above the configuration removes none", five,
			[]FailedVoter{{"a", at(1)}}, 7, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RemovableVoters(tt.voters, tt.failed, tt.minVoters)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("RemovableVoters = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuorumIsAMajority(t *testing.T) {
	for voters, want := range map[int]int{0: 0, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 7: 4} {
		if got := Quorum(voters); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", voters, got, want)
		}
	}
}
