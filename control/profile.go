package control

import (
	"errors"
	"fmt"
	"time"

	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// Profile names one set of timings for the whole agent: gossip's probes and
// suspicion, the health monitor's confirming probes, and raft's heartbeats
// and elections. It is the only place a profile name is read (the -profile
// flag); the modules take the timings it gives them, never the name.
type Profile string

// The profiles.
const (
	// ProfileLocal is for agents on one host (loopback) or one rack: dev,
	// demo, tests.
	ProfileLocal Profile = "local"
	// ProfileLAN is for one data centre.
	ProfileLAN Profile = "lan"
	// ProfileWAN is for agents across regions.
	ProfileWAN Profile = "wan"
)

// ErrUnknownProfile is the error of ParseProfile for a name that is not a
// profile.
var ErrUnknownProfile = errors.New("control: unknown profile")

// ParseProfile reads a profile name: local, lan or wan, as the -profile
// flag spells them. An unknown name is an error, never a fallback.
func ParseProfile(s string) (Profile, error) {
	p := Profile(s)
	if _, err := p.Timings(); err != nil {
		return "", err
	}
	return p, nil
}

// Timings are a profile's timings for each module.
type Timings struct {
	// Gossip selects memberlist's timings (gossip.Config.Profile).
	Gossip gossip.Profile
	// Health is the failure detector's configuration, before the flags'
	// overrides (-probe-interval, -failure-threshold, -max-failed).
	Health health.Config
	// Raft are raft's heartbeat, election and leader lease timeouts.
	Raft RaftTimings
}

// RaftTimings are the timeouts of raft that a profile sets.
type RaftTimings struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
}

// Apply sets the timings on a raft configuration.
func (t RaftTimings) Apply(rc *raftctl.Config) {
	rc.HeartbeatTimeout = t.Heartbeat
	rc.ElectionTimeout = t.Election
	rc.LeaderLeaseTimeout = t.LeaderLease
	// As raftctl's default for a 1 s heartbeat timeout: a non-voter hears
	// from the leader at least every 0.4 × its heartbeat timeout.
	rc.NonvoterContact = t.Heartbeat * 2 / 5
	// A non-voter holds no election, and with three times the timeout it
	// needs the leader's word three times less often: every 1.2 s on
	// local and lan instead of 0.4 s. What it costs is how long a
	// non-voter cut off from the leader still names it (3-6 s), which no
	// longer decides whether it calls itself ready: the agent counts its
	// contact with the leader only once its own state has caught up with
	// what the leader had applied when it granted (agent/lease.go).
	rc.NonvoterHeartbeatTimeout = 3 * t.Heartbeat
}

// Raft's own defaults (1 s heartbeat and election timeouts, 500 ms leader
// lease) serve both local and lan: halving them for loopback was tried and
// made leaders step down when several agents share two busy cores (a
// leader that misses its lease for 250 ms is deposed), for a gain of half a
// second on a leader's death, which failure detection hides anyway. A WAN
// needs three times as long to avoid elections on every slow link.
var (
	raftLAN = RaftTimings{Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond}
	raftWAN = RaftTimings{Heartbeat: 3 * time.Second, Election: 3 * time.Second, LeaderLease: 1500 * time.Millisecond}
)

// Timings are the profile's timings; an error for an unknown profile.
func (p Profile) Timings() (Timings, error) {
	switch p {
	case ProfileLocal:
		return Timings{Gossip: gossip.ProfileLocal, Health: health.LocalConfig(), Raft: raftLAN}, nil
	case ProfileLAN:
		return Timings{Gossip: gossip.ProfileLAN, Health: health.LANConfig(), Raft: raftLAN}, nil
	case ProfileWAN:
		return Timings{Gossip: gossip.ProfileWAN, Health: health.WANConfig(), Raft: raftWAN}, nil
	default:
		return Timings{}, fmt.Errorf("%w %q (want %q, %q or %q)", ErrUnknownProfile, string(p), ProfileLocal, ProfileLAN, ProfileWAN)
	}
}
