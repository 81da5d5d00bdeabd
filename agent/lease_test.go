package agent

import (
	"testing"
	"time"

	"github.com/steward-dev/steward/raftctl"
)

// An agent's contact with the leader counts only once its raft log holds
// what the leader had applied when it granted: a non-voter cut off from
// the leader but not from its relay gets grants, and falls behind.
func TestContactCountsOnlyGrantsTheLogHasCaughtUpWith(t *testing.T) {
	start := time.Now()
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	var h heldLease
	view := func(now time.Time, last uint64) leaseView {
		return h.view(now, last, func(index, term uint64) bool { return index <= last })
	}
	if v := view(at(0), 10); v.ContactAge != -1 || v.GrantAge != -1 {
		t.Fatalf("before any grant: %+v", v)
	}

	h.set(at(0), raftctl.LeaseGrant{Duration: 450 * time.Millisecond, AppliedIndex: 10}, "")
	if v := view(at(20), 10); v.ContactAge != 20*time.Millisecond || v.Behind != 0 {
		t.Fatalf("a grant at the agent's own index: %+v", v)
	}

	// The leader applies index 11; the log does not hold it yet.
	h.set(at(150), raftctl.LeaseGrant{Duration: 450 * time.Millisecond, AppliedIndex: 11}, "relay")
	h.set(at(300), raftctl.LeaseGrant{Duration: 450 * time.Millisecond, AppliedIndex: 12}, "relay")
	v := view(at(310), 10)
	if v.ContactAge != 310*time.Millisecond || v.GrantAge != 10*time.Millisecond {
		t.Fatalf("behind: contact %s, grant %s; want 310ms and 10ms", v.ContactAge, v.GrantAge)
	}
	if v.Behind != 12 || v.Last != 10 {
		t.Fatalf("behind: %d over %d, want 12 over 10", v.Behind, v.Last)
	}
	if v.Remaining != 440*time.Millisecond {
		t.Fatalf("the lease itself runs from the newest grant: remaining %s, want 440ms", v.Remaining)
	}

	// The log reaches 11: contact from the grant at 150, not the one at 300.
	if v := view(at(320), 11); v.ContactAge != 170*time.Millisecond || v.Behind != 12 {
		t.Fatalf("caught up with 11: %+v", v)
	}
	// And 12: contact from the newest grant.
	if v := view(at(330), 12); v.ContactAge != 30*time.Millisecond || v.Behind != 0 {
		t.Fatalf("caught up with 12: %+v", v)
	}

	// After an election the new leader may have applied less than the
	// log holds: its grants count at once.
	h.set(at(400), raftctl.LeaseGrant{Duration: 450 * time.Millisecond, AppliedIndex: 9}, "")
	if v := view(at(410), 12); v.ContactAge != 10*time.Millisecond {
		t.Fatalf("a grant below the log's end: %+v", v)
	}
}

func TestGrantsKeptUntilCaughtUpAreBounded(t *testing.T) {
	start := time.Now()
	var h heldLease
	for i := range 3 * maxBehind {
		h.set(start.Add(time.Duration(i)*time.Millisecond), raftctl.LeaseGrant{Duration: time.Second, AppliedIndex: uint64(100 + i)}, "")
	}
	if len(h.behind) != maxBehind {
		t.Fatalf("%d grants kept, want %d", len(h.behind), maxBehind)
	}
	newest := start.Add(time.Duration(3*maxBehind-1) * time.Millisecond)
	if v := h.view(newest, 1000, func(uint64, uint64) bool { return true }); v.ContactAge != 0 || len(h.behind) != 0 {
		t.Fatalf("caught up with all: %+v, %d kept", v, len(h.behind))
	}
}

// A log that ends past the leader's applied index may hold another term's
// entry there (a deposed leader's entries that were never committed): it
// has not caught up until the leader's entry replaces it.
func TestALogWithAnotherTermsEntryAtTheIndexHasNotCaughtUp(t *testing.T) {
	start := time.Now()
	var h heldLease
	h.set(start, raftctl.LeaseGrant{Duration: time.Second, AppliedIndex: 102, AppliedTerm: 5}, "")
	terms := map[uint64]uint64{101: 4, 102: 4, 103: 4} // the deposed leader's term-4 tail
	holds := func(index, term uint64) bool { return terms[index] == term }
	if v := h.view(start.Add(10*time.Millisecond), 103, holds); v.ContactAge != -1 || v.Behind != 102 {
		t.Fatalf("with a term-4 entry at 102: %+v", v)
	}
	terms[102], terms[103] = 5, 0 // the new leader's entry replaced it
	delete(terms, 103)
	if v := h.view(start.Add(20*time.Millisecond), 102, holds); v.ContactAge != 20*time.Millisecond {
		t.Fatalf("with the leader's entry at 102: %+v", v)
	}
}
