package control

import (
	"errors"
	"testing"
	"time"

	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

func TestEveryProfileTimesGossipHealthAndRaft(t *testing.T) {
	tests := []struct {
		name              string
		gossip            gossip.Profile
		interval, timeout time.Duration
		election          time.Duration
	}{
		{"local", gossip.ProfileLocal, 200 * time.Millisecond, 150 * time.Millisecond, time.Second},
		{"lan", gossip.ProfileLAN, 300 * time.Millisecond, 250 * time.Millisecond, time.Second},
		{"wan", gossip.ProfileWAN, 3 * time.Second, 2 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		p, err := ParseProfile(tt.name)
		if err != nil {
			t.Fatalf("ParseProfile(%q): %v", tt.name, err)
		}
		tm, err := p.Timings()
		if err != nil {
			t.Fatal(err)
		}
		if tm.Gossip != tt.gossip {
			t.Errorf("%s: gossip profile %s, want %s", p, tm.Gossip, tt.gossip)
		}
		if _, err := tm.Gossip.MemberlistConfig(); err != nil {
			t.Errorf("%s: gossip timings: %v", p, err)
		}
		hc := tm.Health
		if hc.ProbeInterval != tt.interval || hc.ProbeTimeout != tt.timeout || hc.FailureThreshold != 3 {
			t.Errorf("%s: health %+v, want interval %v, timeout %v, threshold 3", p, hc, tt.interval, tt.timeout)
		}
		if err := hc.Validate(); err != nil {
			t.Errorf("%s: health timings do not validate: %v", p, err)
		}
		if err := health.AppConfigFrom(hc).Validate(); err != nil {
			t.Errorf("%s: app health timings do not validate: %v", p, err)
		}
		var rc raftctl.Config
		tm.Raft.Apply(&rc)
		if rc.ElectionTimeout != tt.election || rc.HeartbeatTimeout != tt.election || rc.LeaderLeaseTimeout != tt.election/2 {
			t.Errorf("%s: raft heartbeat %v, election %v, lease %v; want %v, %v, %v", p, rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout, tt.election, tt.election, tt.election/2)
		}
	}
	if lan, _ := ProfileLAN.Timings(); health.DefaultConfig() != lan.Health {
		t.Error("health's DefaultConfig is not the lan profile's")
	}
}

// An unknown profile is an error wherever it is read, never lan's timings.
func TestAnUnknownProfileIsAnError(t *testing.T) {
	for _, name := range []string{"moon", "", "LAN", " lan"} {
		if _, err := ParseProfile(name); !errors.Is(err, ErrUnknownProfile) {
			t.Fatalf("ParseProfile(%q): %v, want ErrUnknownProfile", name, err)
		}
	}
	if tm, err := Profile("moon").Timings(); !errors.Is(err, ErrUnknownProfile) || tm != (Timings{}) {
		t.Fatalf("Timings of moon: %+v, %v; want no timings and ErrUnknownProfile", tm, err)
	}
}
