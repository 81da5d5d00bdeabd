package gossip

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profile names a set of memberlist timings: gossip's part of the agent's
// timing profile (control.Profile, which reads the -profile flag). Each
// starts from one of memberlist's own default configurations, so that the
// numbers are the ones memberlist's authors tested; ProfileLocal and
// ProfileLAN depart from them where measured here (the comments say why).
type Profile string

const (
	// ProfileLocal is for agents on one host (loopback) or one rack: fast
	// probes, short suspicion. Starts from memberlist.DefaultLocalConfig.
	ProfileLocal Profile = "local"
	// ProfileLAN is for one data centre: memberlist.DefaultLANConfig with
	// faster probes and gossip (see MemberlistConfig).
	ProfileLAN Profile = "lan"
	// ProfileWAN is memberlist.DefaultWANConfig unchanged.
	ProfileWAN Profile = "wan"
)

// ErrUnknownProfile is returned for a Profile that is none of the above.
var ErrUnknownProfile = fmt.Errorf("gossip: unknown profile (want %q, %q or %q)", ProfileLocal, ProfileLAN, ProfileWAN)

// String returns the profile's name.
func (p Profile) String() string { return string(p) }

// MemberlistConfig returns a fresh memberlist configuration with this
// profile's timings and nothing else set (no name, ports or delegates). It is
// exported so that other modules (health probes, benchmarks) can derive their
// own defaults from the same numbers.
func (p Profile) MemberlistConfig() (*memberlist.Config, error) {
	switch p {
	case ProfileLAN:
		c := memberlist.DefaultLANConfig()
		// Measured here (docs/benchmarks.md, failure detection): with
		// DefaultLANConfig a SIGKILLed agent was failed on every survivor
		// after 4.4 s, of which a second or two is waiting for memberlist
		// to suspect it at all; Steward's own probes confirm a suspicion,
		// so a faster, cheaper suspicion is what the lan profile needs,
		// not a surer one.
		//
		// ProbeInterval 500 ms (1 s): a dead node is probed by someone
		// within about half a second. Each probe is one UDP ping per
		// interval per agent: 2 packets a second, whatever the size of
		// the cluster.
		c.ProbeInterval = 500 * time.Millisecond
		// ProbeTimeout 200 ms (500 ms): round trips in one data centre are
		// well under a millisecond; 200 ms still absorbs a long GC pause
		// or a busy host, and the indirect pings and the TCP fallback get
		// the rest of the interval. A false suspicion costs only a few of
		// Steward's probes, never a removal.
		c.ProbeTimeout = 200 * time.Millisecond
		// GossipInterval 100 ms (200 ms): a suspicion, its refutation and
		// metadata changes reach the leader in one or two rounds. memberlist
		// gossips only when it has something to say, so an idle cluster
		// pays nothing for it.
		c.GossipInterval = 100 * time.Millisecond
		// SuspicionMult 4 (unchanged): memberlist's own dead comes
		// 4 × max(1, log10 N) × 500 ms after a suspicion (2 s up to 10
		// agents, 3.4 s at 50), after Steward's verdict, which is what
		// counts; and a node paused for 400 ms refutes long before.
		return c, nil
	case ProfileWAN:
		return memberlist.DefaultWANConfig(), nil
	case ProfileLocal:
		c := memberlist.DefaultLocalConfig()
		// Measured here (DESIGN.md, Traps): DefaultLocalConfig takes a median
		// 5.3 s from SIGKILL to dead on every survivor of 5 loopback nodes,
		// most of it waiting for the first failed probe (ProbeInterval 1 s).
		// An aggressive tuning (200 ms / 100 ms / SuspicionMult 2) reached
		// 1.0 s but leaves little room on a busy machine. These values sit a
		// little on the safe side of that:
		//
		// ProbeInterval 250 ms: a dead node is probed by someone within a
		// few hundred ms. A probe round is direct UDP ping, then indirect
		// pings and a TCP ping, all within one interval, so a node only
		// becomes suspect when none of those answered in 250 ms.
		c.ProbeInterval = 250 * time.Millisecond
		// ProbeTimeout 150 ms: the direct ping's wait. Loopback RTT is
		// microseconds, but with 5 agents (and the race detector) on 2
		// busy cores a goroutine can wait tens of ms for a CPU; 150 ms
		// absorbs that and leaves 100 ms for the indirect and TCP pings.
		c.ProbeTimeout = 150 * time.Millisecond
		// IndirectChecks 3 (LAN's value, Local has 1): asking three peers
		// to ping costs nothing on loopback and makes a single slow peer
		// unable to cause a suspicion alone.
		c.IndirectChecks = 3
		// SuspicionMult 3 (Local's value, 2 was measured as too tight to
		// be safe): a suspect has at least 3 × max(1, log10 N) × 250 ms =
		// 750 ms to refute before it is declared dead, up to
		// SuspicionMaxTimeoutMult (6) times that without confirmations.
		c.SuspicionMult = 3
		// Gossip every 50 ms so that suspicion, refutation and metadata
		// spread in a few tens of ms; with RetransmitMult 4 (LAN's value)
		// each message is sent often enough to reach every peer of a
		// small cluster despite a lost packet.
		c.GossipInterval = 50 * time.Millisecond
		c.RetransmitMult = 4
		return c, nil
	default:
		return nil, fmt.Errorf("%w: %q", ErrUnknownProfile, string(p))
	}
}

// reconnectInterval is the profile's default Config.ReconnectInterval: a
// healed partition merges within about one interval, and a node dead for
// good costs one failed connection per interval.
func (p Profile) reconnectInterval() time.Duration {
	switch p {
	case ProfileLocal:
		return time.Second
	case ProfileWAN:
		return 15 * time.Second
	default:
		return 5 * time.Second
	}
}
