package raftctl

import (
	"reflect"
	"testing"
	"time"
)

func TestPlanVoters(t *testing.T) {
	const stable = 10 * time.Second
	// ready is a healthy, caught-up server, stable for long enough.
	ready := func(id string, voter bool) ServerHealth {
		return ServerHealth{ID: id, Voter: voter, Healthy: true, CaughtUp: true, StableFor: time.Minute}
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
			name: "two healthy of five: never demote below one voter, and the leader never",
			servers: []ServerHealth{
				with(ready("a", true), func(s *ServerHealth) { s.Leader = true }),
				ready("b", true),
				with(ready("c", true), func(s *ServerHealth) { s.Healthy = false }),
			},
			target: 5,
			demote: []string{"c", "b"},
		},
		{
			name: "target lowered: demote unhealthy, then lagging, then by ID",
			servers: []ServerHealth{
				ready("a", true),
				with(ready("b", true), func(s *ServerHealth) { s.Leader = true }),
				ready("c", true),
				with(ready("d", true), func(s *ServerHealth) { s.CaughtUp = false }),
				with(ready("e", true), func(s *ServerHealth) { s.Healthy = false }),
			},
			target: 3,
			demote: []string{"e", "d"},
		},
		{
			name: "four healthy of five voters: three voters are as safe as four",
			servers: []ServerHealth{
				ready("a", true), ready("b", true), ready("c", true), ready("d", true),
				with(ready("e", true), func(s *ServerHealth) { s.Healthy = false }),
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
