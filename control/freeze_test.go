package control

import (
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
