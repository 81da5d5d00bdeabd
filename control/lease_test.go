package control

import (
	"errors"
	"testing"
	"time"

	"github.com/steward-dev/steward/health"
)

// testTimings are the local profile's lease timings.
func testTimings(t *testing.T) LeaseTimings {
	return LeaseTimingsFor(health.LocalConfig())
}

func primaries(m map[int]uint64) func() map[int]uint64 {
	return func() map[int]uint64 { return m }
}

// leadingLedger is a ledger whose leader took over at t0 and has waited
// out its predecessors, verified just now.
func leadingLedger(t *testing.T, t0 time.Time) (*LeaseLedger, time.Time) {
	lt := testTimings(t)
	l := NewLeaseLedger(lt)
	l.BecameLeader(t0, 7)
	now := t0.Add(lt.VerifiedFor + lt.Wait)
	l.Verified(now, 7)
	return l, now
}

func TestLeaseTimingsAreShorterThanFailureDetection(t *testing.T) {
	for _, profile := range []Profile{ProfileLocal, ProfileLAN, ProfileWAN} {
		tm, _ := profile.Timings()
		hc := tm.Health
		lt := LeaseTimingsFor(hc)
		window := time.Duration(hc.FailureThreshold) * hc.ProbeInterval
		if lt.Wait >= window {
			t.Errorf("%s: a handover waits %v, not shorter than the confirmation window %v", profile, lt.Wait, window)
		}
		if lt.Renew*3 > lt.Duration {
			t.Errorf("%s: renewal every %v leaves fewer than three tries per lease of %v", profile, lt.Renew, lt.Duration)
		}
		if lt.Wait <= lt.Duration {
			t.Errorf("%s: the handover wait %v has no margin over the lease %v", profile, lt.Wait, lt.Duration)
		}
	}
}

func TestANewLeaderGrantsContactButNoPartitionUntilOldLeasesRunOut(t *testing.T) {
	t0 := time.Unix(1000, 0)
	lt := testTimings(t)
	l := NewLeaseLedger(lt)
	l.BecameLeader(t0, 3)
	if _, err := l.Grant(t0, 3, "a", primaries(map[int]uint64{1: 4})); !errors.Is(err, ErrLeadershipUnverified) {
		t.Fatalf("grant before any leadership check: %v, want ErrLeadershipUnverified", err)
	}
	l.Verified(t0.Add(time.Millisecond), 3)
	got, err := l.Grant(t0.Add(2*time.Millisecond), 3, "a", primaries(map[int]uint64{1: 4}))
	if err != nil || len(got) != 0 {
		t.Fatalf("while holding: %v, %v; want contact with no partition", got, err)
	}
	later := t0.Add(lt.VerifiedFor + lt.Wait)
	l.Verified(later, 3)
	got, err = l.Grant(later, 3, "a", primaries(map[int]uint64{1: 4}))
	if err != nil || got[1] != 4 {
		t.Fatalf("after the hold: %v, %v; want partition 1 at epoch 4", got, err)
	}
}

func TestAStaleLeadershipCheckStopsGrants(t *testing.T) {
	l, now := leadingLedger(t, time.Unix(1000, 0))
	late := now.Add(l.t.VerifiedFor + time.Millisecond)
	if _, err := l.Grant(late, 7, "a", primaries(nil)); !errors.Is(err, ErrLeadershipUnverified) {
		t.Fatalf("grant %v after the last check: %v, want ErrLeadershipUnverified", late.Sub(now), err)
	}
}

func TestAGrantOfAnotherTermIsRefused(t *testing.T) {
	l, now := leadingLedger(t, time.Unix(1000, 0))
	if _, err := l.Grant(now, 8, "a", primaries(nil)); err == nil {
		t.Fatal("a grant in term 8 from a ledger of term 7 was made")
	}
	l.LostLeadership()
	if _, err := l.Grant(now, 7, "a", primaries(nil)); err == nil {
		t.Fatal("a grant after losing leadership was made")
	}
}

func TestAPartitionMovesToANewPrimaryOnlyAfterTheOldLeaseRanOut(t *testing.T) {
	l, now := leadingLedger(t, time.Unix(1000, 0))
	if got, _ := l.Grant(now, 7, "old", primaries(map[int]uint64{5: 1, 6: 1})); len(got) != 2 {
		t.Fatalf("old primary granted %v, want partitions 5 and 6", got)
	}
	// Raft moves partition 5 to "new" at epoch 2; "old" keeps 6.
	soon := now.Add(l.t.Wait / 2)
	l.Verified(soon, 7)
	if got, _ := l.Grant(soon, 7, "new", primaries(map[int]uint64{5: 2})); len(got) != 0 {
		t.Fatalf("new primary granted %v while the old lease may run", got)
	}
	if got, _ := l.Grant(soon, 7, "old", primaries(map[int]uint64{6: 1})); got[6] != 1 || len(got) != 1 {
		t.Fatalf("old primary granted %v, want only partition 6", got)
	}
	after := now.Add(l.t.Wait)
	l.Verified(after, 7)
	if got, _ := l.Grant(after, 7, "new", primaries(map[int]uint64{5: 2})); got[5] != 2 {
		t.Fatalf("new primary granted %v once the old lease ran out, want partition 5 at epoch 2", got)
	}
	// And back: "old" must wait for "new"'s lease in turn.
	if got, _ := l.Grant(after, 7, "old", primaries(map[int]uint64{5: 3, 6: 1})); got[5] != 0 || got[6] != 1 {
		t.Fatalf("old primary granted %v right after new's grant, want only partition 6", got)
	}
}

func TestRenewalsByTheSamePrimaryAreNeverHeldBack(t *testing.T) {
	l, now := leadingLedger(t, time.Unix(1000, 0))
	for i := 0; i < 20; i++ {
		at := now.Add(time.Duration(i) * l.t.Renew)
		l.Verified(at, 7)
		if got, _ := l.Grant(at, 7, "a", primaries(map[int]uint64{1: 1})); got[1] != 1 {
			t.Fatalf("renewal %d: %v", i, got)
		}
	}
}

func TestAGrantWithAnEarlierClockReadingKeepsTheLaterRecord(t *testing.T) {
	l, now := leadingLedger(t, time.Unix(1000, 0))
	l.Verified(now.Add(10*time.Millisecond), 7)
	l.Grant(now.Add(10*time.Millisecond), 7, "a", primaries(map[int]uint64{1: 1}))
	// A request whose clock was read before the one above but granted
	// after it must not pull the record back in time.
	l.Grant(now, 7, "a", primaries(map[int]uint64{1: 1}))
	justAfterEarly := now.Add(l.t.Wait)
	l.Verified(justAfterEarly, 7)
	if got, _ := l.Grant(justAfterEarly, 7, "b", primaries(map[int]uint64{1: 2})); len(got) != 0 {
		t.Fatalf("b granted %v while a's later lease may run", got)
	}
}
