package health

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultMaxFailed(t *testing.T) {
	for total, want := range map[int]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 9: 3, 10: 4, 30: 10} {
		if got := DefaultMaxFailed(total); got != want {
			t.Errorf("DefaultMaxFailed(%d) = %d, want %d", total, got, want)
		}
	}
}

func TestFreezeDecision(t *testing.T) {
	tests := []struct {
		name       string
		total      int
		failed     int
		maxFailed  int
		manual     bool
		wantFrozen bool
		wantReason string
	}{
		{"nothing failed", 5, 0, 0, false, false, ""},
		{"one of five failed heals", 5, 1, 0, false, false, ""},
		{"two of five killed at once still heal", 5, 2, 0, false, false, ""},
		{"three of five at once is a network fault", 5, 3, 0, false, true, "3 of 5 nodes are failed"},
		{"one of three heals", 3, 1, 0, false, false, ""},
		{"two of three freezes", 3, 2, 0, false, true, "limit of 1"},
		{"explicit limit is used", 10, 2, 1, false, true, "limit of 1"},
		{"explicit limit allows more", 10, 5, 5, false, false, ""},
		{"maintenance freezes even with nothing failed", 5, 0, 0, true, true, "maintenance"},
		{"maintenance wins over a network fault", 5, 4, 0, true, true, "maintenance"},
		{"a single-node cluster may fail its one node", 1, 1, 0, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frozen, reason := FreezeDecision(tt.total, tt.failed, tt.maxFailed, tt.manual)
			if frozen != tt.wantFrozen {
				t.Fatalf("frozen = %v (%q), want %v", frozen, reason, tt.wantFrozen)
			}
			if tt.wantFrozen && !strings.Contains(reason, tt.wantReason) {
				t.Fatalf("reason %q should mention %q", reason, tt.wantReason)
			}
			if !tt.wantFrozen && reason != "" {
				t.Fatalf("not frozen but reason %q", reason)
			}
		})
	}
}

func TestFreezeCountsOnlyRecentUnhandledFailures(t *testing.T) {
	w := FreezeWindows{AtOnce: 10 * time.Second, Handling: 10 * time.Minute}
	handledLongAgo := MarkedFailure{FailedFor: 3 * time.Hour, Handled: true}
	tests := []struct {
		name                string
		present, troubled   int
		marked              []MarkedFailure
		wantTotal, wantFail int
		maxFailed           int
		wantFrozen          bool
	}{
		{"three nodes replaced under new IDs, then a fourth death", 5, 1,
			[]MarkedFailure{handledLongAgo, handledLongAgo, handledLongAgo}, 5, 1, 0, false},
		{"a failure being handled counts", 5, 1,
			[]MarkedFailure{{FailedFor: time.Minute}}, 6, 2, 0, false},
		{"handled a minute ago: history", 5, 1,
			[]MarkedFailure{{FailedFor: time.Minute, Handled: true}}, 5, 1, 0, false},
		{"handled within the at-once window: still counts", 4, 1,
			[]MarkedFailure{{FailedFor: 2 * time.Second, Handled: true}}, 5, 2, 0, false},
		{"stuck unhandled past the handling window: history too", 5, 1,
			[]MarkedFailure{{FailedFor: w.Handling}}, 5, 1, 0, false},
		{"a second death seconds after a first one handled at once freezes at a limit of 1", 3, 1,
			[]MarkedFailure{{FailedFor: 3 * time.Second, Handled: true}}, 4, 2, 1, true},
		{"several going at once still freeze", 8, 3,
			[]MarkedFailure{{FailedFor: time.Second}, {FailedFor: 2 * time.Second}}, 10, 5, 0, true},
		{"suspects alone are counted", 5, 3, nil, 5, 3, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, failed := FreezeCounts(tt.present, tt.troubled, tt.marked, w)
			if total != tt.wantTotal || failed != tt.wantFail {
				t.Fatalf("FreezeCounts = %d of %d, want %d of %d", failed, total, tt.wantFail, tt.wantTotal)
			}
			if frozen, reason := FreezeDecision(total, failed, tt.maxFailed, false); frozen != tt.wantFrozen {
				t.Fatalf("frozen = %v (%q), want %v", frozen, reason, tt.wantFrozen)
			}
		})
	}
	// Before: every failed member counted, in total and as failed.
	if frozen, _ := FreezeDecision(8, 4, 0, false); !frozen {
		t.Fatal("the old count of the first case should have frozen (the bug)")
	}
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

func TestProfiles(t *testing.T) {
	tests := []struct {
		profile  string
		interval time.Duration
		timeout  time.Duration
	}{
		{ProfileLocal, 200 * time.Millisecond, 150 * time.Millisecond},
		{ProfileLAN, time.Second, 500 * time.Millisecond},
		{ProfileWAN, 3 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		cfg, err := ProfileConfig(tt.profile)
		if err != nil {
			t.Fatalf("ProfileConfig(%q): %v", tt.profile, err)
		}
		if cfg.ProbeInterval != tt.interval || cfg.ProbeTimeout != tt.timeout || cfg.FailureThreshold != 3 {
			t.Errorf("%s: %+v, want interval %v, timeout %v, threshold 3", tt.profile, cfg, tt.interval, tt.timeout)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s does not validate: %v", tt.profile, err)
		}
		if err := AppConfigFrom(cfg).Validate(); err != nil {
			t.Errorf("%s app config does not validate: %v", tt.profile, err)
		}
	}
	if _, err := ProfileConfig("moon"); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("unknown profile: err %v, want ErrUnknownProfile", err)
	}
	if DefaultConfig() != mustProfile(t, ProfileLAN) {
		t.Fatal("DefaultConfig should be the lan profile")
	}
}

func mustProfile(t *testing.T, name string) Config {
	t.Helper()
	cfg, err := ProfileConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestValidateRejectsConfigsThatCannotWork(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"zero interval", func(c *Config) { c.ProbeInterval = 0 }},
		{"zero timeout", func(c *Config) { c.ProbeTimeout = 0 }},
		{"timeout not shorter than interval", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }},
		{"zero threshold", func(c *Config) { c.FailureThreshold = 0 }},
		{"negative window", func(c *Config) { c.FlapWindow = -time.Second }},
		{"max below base", func(c *Config) { c.HoldDownMax = c.HoldDownBase - 1 }},
		{"negative max failed", func(c *Config) { c.MaxFailed = -1 }},
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		tt.change(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", tt.name, err)
		}
	}
	damping := DefaultConfig()
	damping.FlapWindow, damping.HoldDownBase, damping.HoldDownMax = 0, 0, 0
	if err := damping.Validate(); err != nil {
		t.Fatalf("damping off should be valid: %v", err)
	}
}

func TestFailedCountIncludesHeldDownNodes(t *testing.T) {
	nodes := []NodeHealth{
		{Node: "a", State: StateHealthy},
		{Node: "b", State: StateSuspect},
		{Node: "c", State: StateFailed},
		{Node: "d", State: StateHeldDown},
	}
	if got := FailedCount(nodes); got != 2 {
		t.Fatalf("FailedCount = %d, want 2 (failed and held-down)", got)
	}
}
