package agent

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// This file watches this agent's wall clock against the leader's. Nothing
// the leader decides depends on it (every timeout is measured on one
// node's monotonic clock), but webhooks carry this agent's wall clock in
// webhook-timestamp, as Standard Webhooks defines it, and an app that
// checks it rejects every event from an agent whose clock is off by more
// than its tolerance: a follower an hour ahead had all of its webhooks
// refused until its clock was fixed.

// clockSkewInterval is how often a follower compares its clock with the
// leader's.
const clockSkewInterval = 10 * time.Second

// clockSkewTolerance is how far this agent's wall clock may be from the
// leader's before it warns: the tolerance apps apply to webhook
// timestamps (hooks.DefaultTolerance).
const clockSkewTolerance = hooks.DefaultTolerance

// clockSkewWarnEvery bounds the warnings while the clock stays off.
const clockSkewWarnEvery = time.Minute

// clockSkew is the last measurement.
type clockSkewState struct {
	mu       sync.Mutex
	skew     time.Duration
	warnedAt time.Duration // Elapsed of the last warning; -1: none while off
}

// estimateClockSkew is this node's wall clock minus the peer's, from one
// ping sent at sent (this node's wall clock) that took rtt (this node's
// monotonic clock) and was answered with the peer's clock: the peer read
// its clock between the two ends of the round trip, taken as halfway, so
// the error is at most rtt/2.
func estimateClockSkew(sent time.Time, rtt time.Duration, peer time.Time) time.Duration {
	return sent.Add(rtt / 2).Sub(peer)
}

// clockSkewLoop measures, on a follower, how far its wall clock is from
// the leader's over the raft port (raftctl.Node.PeerClock); the leader
// reports 0.
func (a *Agent) clockSkewLoop() {
	a.every(clockSkewInterval, func() {
		if a.raft.IsLeader() {
			a.setClockSkew(0)
			return
		}
		if _, addr := a.raft.Leader(); addr != "" {
			if skew, ok := a.measureClockSkew(addr); ok {
				a.setClockSkew(skew)
			}
		}
	})
}

// measureClockSkew asks the agent at raft address addr for its wall clock
// and returns this agent's wall clock minus that agent's; false when it did
// not answer (or is of a version that does not tell its clock).
func (a *Agent) measureClockSkew(addr string) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(a.ctx, 2*time.Second)
	defer cancel()
	sent := a.clock.Now()
	peer, rtt, err := a.raft.PeerClock(ctx, addr)
	if err != nil {
		return 0, false
	}
	return estimateClockSkew(sent, rtt, peer), true
}

// setClockSkew records a measurement for /v1/status and the metric, and
// warns loudly while the skew exceeds the tolerance.
func (a *Agent) setClockSkew(skew time.Duration) {
	a.skew.mu.Lock()
	defer a.skew.mu.Unlock()
	a.skew.skew = skew
	a.metrics.clockSkew.Set(skew.Seconds())
	off := skew > clockSkewTolerance || skew < -clockSkewTolerance
	now := a.clock.Elapsed()
	switch {
	case !off:
		if a.skew.warnedAt >= 0 {
			a.log.Info("wall clock back within tolerance of the leader's", "skew", skew.Round(time.Millisecond).String())
		}
		a.skew.warnedAt = -1
	case a.skew.warnedAt < 0 || now-a.skew.warnedAt >= clockSkewWarnEvery:
		a.skew.warnedAt = now
		a.log.Error("WALL CLOCK OFF: this agent's clock differs from the leader's by more than the webhook tolerance; "+
			"apps that check webhook-timestamp reject this agent's webhooks until it is fixed (check NTP or chrony on this host; "+
			"if every follower reports the same skew, fix the leader's clock)",
			"skew", skew.Round(time.Second).String(), "tolerance", clockSkewTolerance.String())
	}
}

// clockSkewSeconds is the last measurement, in seconds, rounded to the
// millisecond.
func (a *Agent) clockSkewSeconds() float64 {
	a.skew.mu.Lock()
	defer a.skew.mu.Unlock()
	return math.Round(a.skew.skew.Seconds()*1000) / 1000
}
