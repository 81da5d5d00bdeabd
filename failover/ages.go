package failover

import "time"

// Ages are the durations the planner's timeouts compare with their limits:
// how long each migration has been in flight (Limits.MigrationTimeout) and
// how long each failed member has been failed (Limits.ReplaceDelay), and
// how long ago each recorded failed copy failed (Limits.CopyRetryBackoff).
//
// They are durations, not timestamps, because the timestamps in the state
// (Migration.StartedAt, Member.StatusSince) are wall-clock readings of
// whichever leader proposed the command: subtracting one from another
// node's clock, or from the same clock after it was stepped, gives any
// answer at all (a leader whose clock jumped an hour ahead would cancel
// every copy in flight). The agent measures ages on its own monotonic
// clock instead, from when it first saw each migration and failure.
//
// A migration or member missing from its map has age 0: just begun, as far
// as the caller knows. That errs on the side of waiting (a timeout fires
// late, never early), which is what a new leader, which has not watched
// the earlier ones' clocks, must do.
type Ages struct {
	// Migrations maps Migration.ID to how long the migration has been in
	// flight.
	Migrations map[string]time.Duration
	// Failed maps the ID of a member with StatusFailed to how long it has
	// been failed.
	Failed map[string]time.Duration
	// CopyFailures maps CopyFailureKey(partition, node) of each
	// Partition.CopyFailures record to the time since its latest failure
	// (Limits.CopyRetryBackoff).
	CopyFailures map[string]time.Duration
	// Moved maps a partition to how long ago its placement last changed
	// (its epoch went up), for the load hysteresis (LoadPolicy.Hysteresis).
	Moved map[int]time.Duration
}

// migration returns the age of the migration id (0 when unknown).
func (a Ages) migration(id string) time.Duration { return a.Migrations[id] }

// failed returns how long member id has been failed (0 when unknown).
func (a Ages) failed(id string) time.Duration { return a.Failed[id] }

// copyFailure returns the time since the latest failed copy of partition to
// node (0 when unknown).
func (a Ages) copyFailure(partition int, node string) time.Duration {
	if a.CopyFailures == nil {
		return 0
	}
	return a.CopyFailures[CopyFailureKey(partition, node)]
}

// AgesAt derives Ages from the state's own timestamps, read at now (unix
// nanoseconds) on the clock that stamped them. It is right only when every
// timestamp and now come from one clock that never steps: tests,
// simulations and benchmarks. The agent does not use it.
func AgesAt(c *Cluster, now int64) Ages {
	a := Ages{Migrations: map[string]time.Duration{}, Failed: map[string]time.Duration{}, CopyFailures: map[string]time.Duration{}}
	if c == nil {
		return a
	}
	for id, m := range c.Members {
		if m.Status == StatusFailed {
			a.Failed[id] = time.Duration(now - m.StatusSince)
		}
	}
	for _, p := range c.Partitions {
		for _, m := range p.Migrations {
			a.Migrations[m.ID] = time.Duration(now - m.StartedAt)
		}
		for _, f := range p.CopyFailures {
			a.CopyFailures[CopyFailureKey(p.ID, f.Node)] = time.Duration(now - f.Last)
		}
	}
	return a
}
