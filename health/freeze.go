package health

import (
	"fmt"
	"sort"
	"time"
)

// DefaultMaxFailed is the number of nodes that may be failed at once before
// automatic removals freeze, for a cluster of total nodes: a third of the
// cluster, rounded up, and at least 1.
//
// Why a third: independent crashes rarely take out many nodes at the same
// moment, while a switch, a partition or an overloaded host that starves
// the agents does. Rounded up rather than down so that a five-node cluster
// still heals two simultaneous deaths on its own (2 of 5 is also the most
// voters (5-1)/2 allows to remove); with rounding down it would freeze at
// the second death.
func DefaultMaxFailed(total int) int {
	m := (total + 2) / 3
	if m < 1 {
		m = 1
	}
	return m
}

// FreezeDecision says whether automatic removals must stop. total is the
// number of members (failed ones included, left ones not), failed the number
// currently failed or held down, maxFailed the configured limit (0: the
// default, DefaultMaxFailed(total)), manual whether an operator switched
// maintenance on. Removals freeze when manual is set or when more than
// maxFailed nodes are failed at once; reason says why, for status, logs and
// metrics, and is empty when not frozen.
func FreezeDecision(total, failed, maxFailed int, manual bool) (frozen bool, reason string) {
	if manual {
		return true, "maintenance mode is on: automatic removals are paused by an operator"
	}
	limit := maxFailed
	if limit <= 0 {
		limit = DefaultMaxFailed(total)
	}
	if failed > limit {
		return true, fmt.Sprintf("%d of %d nodes are failed at once, more than the limit of %d: "+
			"more likely a network fault than deaths, automatic removals are frozen", failed, total, limit)
	}
	return false, ""
}

// MarkedFailure is a member the cluster state holds failed, as the freeze
// counts it.
type MarkedFailure struct {
	// FailedFor is how long the member has been failed, measured on the
	// deciding leader's monotonic clock (never a difference of wall-clock
	// timestamps).
	FailedFor time.Duration
	// Handled: the failure's consequences are done. The member holds no
	// copy and no copy is being made for it, and its raft server is out of
	// the configuration.
	Handled bool
}

// FreezeWindows bound how long a member marked failed counts towards the
// freeze, as ages on the leader's monotonic clock.
type FreezeWindows struct {
	// AtOnce: a failure this recent counts, handled or not. Failures
	// confirmed within it of each other happened at once, as far as failure
	// detection can tell; a first death handled in a second must not let a
	// second one, confirmed a moment later, through a freeze of one.
	AtOnce time.Duration
	// Handling: past AtOnce, a failure counts while it is unhandled, up to
	// this age. Past it, the failure is stuck, not part of a wave.
	Handling time.Duration
}

// FreezeCounts returns FreezeDecision's total and failed for one look at
// the cluster:
//
//   - present members are those the state holds alive, suspect or
//     leaving; troubled of them the detector holds suspect or failed, not
//     yet marked. Both count, troubled ones as failed: when several nodes
//     go at once, the first verdict must not be acted on while the others
//     are being confirmed.
//   - a member marked failed counts (in total and as failed) while its
//     failure is recent (younger than AtOnce) or, up to Handling, not yet
//     handled. One failed long ago and handled is history, not part of
//     what is going wrong now: counting it made a cluster that had
//     replaced three dead nodes under new IDs freeze at the fourth death
//     ("4 of 8 nodes are failed at once"), for good.
//   - members that left count nowhere.
func FreezeCounts(present, troubled int, marked []MarkedFailure, w FreezeWindows) (total, failed int) {
	total, failed = present, troubled
	for _, f := range marked {
		if f.FailedFor < w.AtOnce || (!f.Handled && f.FailedFor < w.Handling) {
			total++
			failed++
		}
	}
	return total, failed
}

// FailedCount counts the nodes of a snapshot that the cluster should hold
// failed: failed and held-down ones. It is the failed argument of
// FreezeDecision.
func FailedCount(nodes []NodeHealth) int {
	n := 0
	for _, h := range nodes {
		if h.State == StateFailed || h.State == StateHeldDown {
			n++
		}
	}
	return n
}

// MaxRemovableVoters is how many failed voters may be removed from a raft
// configuration of voters voters in one go: (voters-1)/2, raft-autopilot's
// rule. It never removes a majority at once: if the failure view is wrong
// (a partition seen from one side), the nodes removed by mistake are still a
// minority of the old configuration and cannot have formed a quorum of
// their own.
func MaxRemovableVoters(voters int) int {
	if voters < 1 {
		return 0
	}
	return (voters - 1) / 2
}

// FailedVoter is a voter held failed, with how long it has been.
type FailedVoter struct {
	// ID is the node ID as it appears in voters.
	ID string
	// FailedFor is how long the node has been failed, on the leader's
	// monotonic clock; the oldest failure is removed first.
	FailedFor time.Duration
}

// RemovableVoters returns which of the failed voters may be removed now, in
// the order to remove them: oldest failure first, ties broken by ID. voters
// is the current raft configuration's voter IDs. A failed node that is not
// among voters is ignored (it is not a voter, or already removed). At most
// MaxRemovableVoters(len(voters)) are returned, and never so many that fewer
// than minVoters voters would remain (minVoters ≤ 0: no minimum).
func RemovableVoters(voters []string, failed []FailedVoter, minVoters int) []string {
	isVoter := make(map[string]bool, len(voters))
	for _, v := range voters {
		isVoter[v] = true
	}
	candidates := make([]FailedVoter, 0, len(failed))
	seen := make(map[string]bool, len(failed))
	for _, f := range failed {
		if isVoter[f.ID] && !seen[f.ID] {
			seen[f.ID] = true
			candidates = append(candidates, f)
		}
	}
	sort.Slice(candidates, func(i, j int) bool {
		if candidates[i].FailedFor != candidates[j].FailedFor {
			return candidates[i].FailedFor > candidates[j].FailedFor
		}
		return candidates[i].ID < candidates[j].ID
	})
	limit := MaxRemovableVoters(len(isVoter))
	if minVoters > 0 && len(isVoter)-minVoters < limit {
		limit = len(isVoter) - minVoters
	}
	if limit < 0 {
		limit = 0
	}
	if len(candidates) > limit {
		candidates = candidates[:limit]
	}
	out := make([]string, 0, len(candidates))
	for _, c := range candidates {
		out = append(out, c.ID)
	}
	return out
}
