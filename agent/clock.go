package agent

import "time"

// clock is the agent's time source, split in two because the two readings
// answer different questions.
//
// Now is the wall clock: for timestamps that leave this node and mean a
// moment to someone else (the At of raft commands, shown as status_since
// and started_at; webhook-timestamp, which Standard Webhooks defines as
// unix time; logs).
//
// Elapsed is a monotonic reading: the time since an arbitrary origin, which
// a step of the wall clock (NTP, an operator, a VM resumed) does not move.
// Every timeout and age the leader decides on is a difference of two
// Elapsed readings of this one process, never a difference of wall-clock
// timestamps, which may come from different nodes' clocks or from this
// clock before a step. A leader whose wall clock jumped an hour ahead used
// to cancel every copy in flight as "timed out after 1h0m11s".
type clock interface {
	Now() time.Time
	Elapsed() time.Duration
}

// systemClock reads the real clocks. Go's time.Now carries a monotonic
// reading, and time.Since subtracts those, so Elapsed never steps.
type systemClock struct{ origin time.Time }

func newSystemClock() systemClock { return systemClock{origin: time.Now()} }

func (c systemClock) Now() time.Time { return time.Now() }

func (c systemClock) Elapsed() time.Duration { return time.Since(c.origin) }
