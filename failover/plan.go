package failover

import "time"

// The planner.
//
// This file holds its API and the order of its work; planner.go its view of
// the table; repair.go the steps that restore primaries, copies and the
// zone spread; rebalance.go the moves towards balance; score.go how it
// chooses between nodes and words why.
//
// Plan looks at the whole table once and proposes, in priority order:
// promotions (primary failed, leaving, left, unknown, app-unhealthy or
// missing), a new copy for a partition that has no copy able to lead,
// replacements of failed and leaving holders, missing copies, cancellation
// of broken or timed-out migrations (completion with Limits.Instant),
// removal of failed holders, removal of surplus copies, zone-spread moves,
// replica rebalancing and primary rebalancing. Decisions:
//
//   - One action per partition per plan, each naming the partition's epoch
//     at planning time (see below); multi-step work takes several plans.
//   - Zone spread (hard, checked before load): for k copies over z zones
//     that have nodes taking copies, at most one copy per zone when k ≤ z,
//     otherwise every zone holds one and none more than k−z+1. It is
//     relaxed only when no node satisfies it at all (never merely because
//     the fitting node is throttled: then the copy waits).
//   - An app-unhealthy node keeps the copies it has (no churn on a health
//     flap) but takes no new ones and leads nothing; its primaries move to
//     healthy replicas, or, when no replica can lead, to a new copy that
//     replaces it. Only when no healthy node can take a copy at all does a
//     copy of a failed or leaving holder go to an app-unhealthy node.
//   - A partition whose copies are all gone gets a migration with no
//     Source that Replaces the dead primary: when it completes, the target
//     becomes the (empty) primary. With ReplaceDelay it waits for the delay,
//     since the old holder may come back with the data. A partition marked
//     DataLost (its last copy was reported lost by its app, see lost.go)
//     never does: it stays without a primary, and counts in no node's
//     share, until a holder that has the data is back.
//   - A copy's source is the partition's primary, or, when the primary's
//     migration slots are taken, another holder with a free slot, a live
//     replica before a leaving holder (sourceFor): a copy occupies its
//     source as much as its target, and restoring a failed node's copies
//     should not queue behind the few primaries that are busy. Targets
//     likewise are the best unthrottled node that passes the hard
//     constraints.
//   - Rebalancing starts only when no partition needs a copy (restoration
//     fills the nodes below their share anyway), and primaries are
//     rebalanced only when no copy is moving or in flight.
//   - Balance guarantee, once converged: every node that takes copies holds
//     floor(share) or ceil(share) copies and leads floor or ceil of its
//     primary share, the shares being weight-proportional after the hard
//     caps (see quota.go). For equal weights in one zone that is "within
//     one of the mean"; with weights or unequal zones it is within one of
//     the capped weighted share, which can differ from total×w/W when a
//     node's share would exceed one copy of every partition or a zone's
//     share would break the zone spread rule. A join or leave moves the
//     optimum number of copies when direct moves suffice (always with one
//     zone and equal weights); a chain of moves (rebalanceChains) is used
//     only when no direct move exists.

// Limits bound how much the planner changes at once.
type Limits struct {
	// MaxMigrationsPerNode bounds the migrations in flight that one node
	// takes part in, as target or as source (copying costs both ends).
	// Zero or negative means no limit. Default 2.
	MaxMigrationsPerNode int
	// MaxMigrations bounds the migrations in flight in the whole cluster.
	// Zero or negative means no limit. Default 32.
	MaxMigrations int
	// MigrationTimeout, in nanoseconds: a migration in flight for longer
	// than this (PlanInput.Ages) is cancelled and re-planned. Zero means
	// never.
	MigrationTimeout int64
	// ReplaceDelay, in nanoseconds: the copies held by a node failed for
	// less than this long (PlanInput.Ages) are not re-created elsewhere yet
	// (a node back in time resyncs instead of being copied in full).
	// Promotions never wait. Default 0.
	ReplaceDelay int64
	// Instant is set when no webhook URL is configured: nobody will
	// acknowledge a copy, so a copy is done as soon as it is started. Plan
	// then proposes ActionCompleteMigration for every migration in flight
	// whose target is alive (at the finish-migration priority). A new copy
	// therefore takes two plans: the start, then (once the start is
	// committed) its completion. Plan never chains both on one partition.
	Instant bool
	// CopyRetryBackoff, in nanoseconds: after a copy to a node failed (the
	// app refused it or it timed out), the planner waits this long before
	// it tries that node again for the same partition, doubled after every
	// further failure (PlanInput.Ages.CopyFailures). Zero retries at once.
	// Default 5 s.
	CopyRetryBackoff int64
	// CopyRetryBackoffMax caps the doubled wait, in nanoseconds (zero: no
	// cap). Default 5 minutes.
	CopyRetryBackoffMax int64
	// MaxCopyFailures: after this many failed copies of a partition to a
	// node in a row, the copy goes to another node; the failing one is
	// tried again only when no other node can take it. Zero never gives
	// up on a node. Default 3.
	MaxCopyFailures int
}

// DefaultLimits returns the limits of the issue: 2 migrations per node, 32
// in the cluster, a 10 minute migration timeout, no replace delay, failed
// copies retried after 5 s doubling up to 5 minutes, another target after
// 3 failures.
func DefaultLimits() Limits {
	return Limits{
		MaxMigrationsPerNode: 2,
		MaxMigrations:        32,
		MigrationTimeout:     int64(10 * time.Minute),
		CopyRetryBackoff:     int64(5 * time.Second),
		CopyRetryBackoffMax:  int64(5 * time.Minute),
		MaxCopyFailures:      3,
	}
}

// PlanInput is everything Plan looks at. Plan reads Cluster and never
// modifies it.
type PlanInput struct {
	// Cluster is the state to plan for.
	Cluster *Cluster
	// Ages are how long each migration has been in flight and each failed
	// member failed, for the migration timeout and the replace delay:
	// durations measured by the caller on one monotonic clock, never
	// differences of the state's wall-clock timestamps (see Ages).
	Ages Ages
	// Seed is the only source of randomness: it breaks ties between
	// otherwise equal candidates (RavenDB-style spreading of primaries).
	Seed int64
	// Limits bound the migrations proposed.
	Limits Limits
	// Figures are the apps' fresh reports of load and disk (load.go); nil
	// plans exactly as without reports.
	Figures *Figures
	// Load are the thresholds applied to Figures; an invalid policy (the
	// zero value) means DefaultLoadPolicy.
	Load LoadPolicy
}

// Action priorities, highest first. Within the replace and add classes the
// priority rises by the number of copies the partition is missing, so that
// the partitions closest to data loss get the migration budget first.
const (
	// PriorityPromote: a partition without a usable primary cannot take
	// writes; nothing is more urgent, and promotions cost no copy.
	PriorityPromote = 1000
	// PriorityLeaderCopy: a partition with no copy that can lead needs a
	// new copy that will become its primary.
	PriorityLeaderCopy = 950
	// PriorityReplace: re-create a copy of a failed or leaving holder.
	PriorityReplace = 800
	// PriorityAdd: add a copy that is simply missing.
	PriorityAdd = 700
	// PriorityOperatorMove: an operator's move (a pin, agent move; a
	// replacement, agent replace). It ranks below every copy that restores
	// the replication factor: data safety first.
	PriorityOperatorMove = 650
	// PriorityFinish: cancel a broken or timed-out migration, or (Instant)
	// complete one.
	PriorityFinish = 600
	// PriorityRemoveFailed: drop a failed holder once it is replaced or
	// cannot be.
	PriorityRemoveFailed = 500
	// PriorityRemoveSurplus: drop a live copy above the replication factor.
	PriorityRemoveSurplus = 400
	// PriorityZoneSpread: move a copy so that the partition spans more zones.
	PriorityZoneSpread = 300
	// PriorityRebalanceReplica: move a copy from a node above its quota to
	// one below it.
	PriorityRebalanceReplica = 200
	// PriorityRebalancePrimary: move a primary role to a node below its
	// primary quota.
	PriorityRebalancePrimary = 100
)

// One action per partition per plan.
//
// Every action names its partition's epoch at planning time, and Plan
// proposes at most one action per partition: each applied action raises the
// epoch, so a second action for the same partition would be stale anyway.
// Work that needs several steps on one partition (cancel then replace,
// promote then replace the old primary, start then complete) takes several
// plans; the leader re-plans after every commit.

// Plan returns the actions that move the cluster towards health and
// balance, at most one per partition, highest priority first (ties in
// partition order). It is pure and deterministic: the same input gives the
// same output. See the package documentation of each step in the code and
// the Priority constants for the order.
func Plan(in PlanInput) []Action {
	p := newPlannerWithFigures(in.Cluster, in.Ages, in.Seed, in.Limits, in.Figures, in.Load)
	if p == nil {
		return nil
	}
	p.planPartitions(false)
	if in.Cluster.Maintenance {
		// Maintenance: nothing moves for balance (see Cluster.Maintenance).
		return p.sorted()
	}
	p.leavePinnedAlone()
	if p.ls != nil {
		p.planLoad()
		return p.sorted()
	}
	if p.needs == 0 {
		// Copies are still being restored: they go to the nodes below
		// their share anyway, and rebalancing now would move copies twice.
		p.rebalanceCounts(true)
	}
	if !p.copyWork {
		p.rebalancePrimaries()
	}
	return p.sorted()
}

// PlanFailure returns the promotions that go with marking node failed:
// for every partition node leads, the best live, app-healthy replica
// becomes primary. The actions name the current epochs, so the caller can
// put them in the same raft entry as the status change (CmdSetStatus with
// Actions). Copies are not re-created here; the next Plan does that.
func PlanFailure(c *Cluster, node string, seed int64) []Action {
	return PlanStatus(c, node, StatusFailed, seed)
}

// PlanStatus is PlanFailure for any status: the promotions needed once node
// has status (failed, leaving, left). It returns nil for an unknown node.
func PlanStatus(c *Cluster, node string, status MemberStatus, seed int64) []Action {
	m, ok := c.Members[node]
	if !ok || !c.Bootstrapped {
		return nil
	}
	view := *c
	view.Members = make(map[string]Member, len(c.Members))
	for id, mm := range c.Members {
		view.Members[id] = mm
	}
	m.Status = status
	view.Members[node] = m
	p := newPlanner(&view, Ages{}, seed, Limits{})
	if p == nil {
		return nil
	}
	p.planPartitions(true)
	return p.sorted()
}
