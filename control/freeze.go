package control

import (
	"fmt"
	"time"

	"github.com/steward-dev/steward/failover"
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

// simultaneousFailureProbes sets the at-once window of the freeze in probe
// intervals: failures confirmed within 50 probe intervals of each other
// (10 s with the local profile, 15 s lan, 150 s wan) count as at once.
// That is five to ten times the time failure detection takes with each
// profile (SIGKILL to failed everywhere, median 1.2 s local, about 2 s lan
// since issue 17, 16.7 s wan in docs/benchmarks.md), so nodes cut off
// together are counted together however their detections spread.
const simultaneousFailureProbes = 50

// FreezeWindowsFor are how long a marked failure counts towards the
// freeze: at once, within simultaneousFailureProbes probe intervals whether
// handled or not; after that while it is not handled, for as long as
// handling it may take, the replace delay plus one migration timeout (the
// planner's default timeout when copies never time out).
func FreezeWindowsFor(probeInterval, replaceDelay, migrationTimeout time.Duration) FreezeWindows {
	if migrationTimeout <= 0 {
		migrationTimeout = time.Duration(failover.DefaultLimits().MigrationTimeout)
	}
	return FreezeWindows{
		AtOnce:   simultaneousFailureProbes * probeInterval,
		Handling: replaceDelay + migrationTimeout,
	}
}
