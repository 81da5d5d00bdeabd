package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-dev/steward/raftctl"
)

func TestAnAgentRenewsThroughAVoterThatDoesNotLead(t *testing.T) {
	servers := []raftctl.Server{
		{ID: "v1", Address: "a1", Voter: true},
		{ID: "v2", Address: "a2", Voter: true},
		{ID: "v3", Address: "a3", Voter: true},
		{ID: "n1", Address: "a4"},
		{ID: "n2", Address: "a5"},
	}
	none := func(string) bool { return false }
	for _, tc := range []struct {
		name, self, leader string
		avoided            func(string) bool
		want               string // "" renews directly
	}{
		{"a voter renews through the other voter that does not lead", "v2", "v1", none, "v3"},
		{"the leader renews with itself", "v1", "v1", none, ""},
		{"no leader known", "n1", "", none, ""},
		{"not in the configuration yet", "n9", "v1", none, ""},
		{"the other voters both avoided", "n1", "v1", func(id string) bool { return id != "v1" }, ""},
		{"the one voter not avoided", "n1", "v1", func(id string) bool { return id == "v2" }, "v3"},
		{"the one voter not avoided, other agent", "n2", "v1", func(id string) bool { return id == "v2" }, "v3"},
	} {
		got, ok := chooseRelay(tc.self, tc.leader, servers, tc.avoided)
		if !ok && tc.want != "" || ok && got.ID != tc.want {
			t.Errorf("%s: relay %q (%v), want %q", tc.name, got.ID, ok, tc.want)
		}
	}
	// Never the leader, and the same relay every time for one agent.
	for _, self := range []string{"n1", "n2"} {
		first, ok := chooseRelay(self, "v2", servers, none)
		if !ok || first.ID == "v2" || !first.Voter {
			t.Fatalf("%s: relay %+v (%v), want a voter that does not lead", self, first, ok)
		}
		for range 5 {
			if again, _ := chooseRelay(self, "v2", servers, none); again != first {
				t.Fatalf("%s: relay changed from %s to %s with nothing changed", self, first.ID, again.ID)
			}
		}
	}
	// Many agents spread over the two relays.
	counts := map[string]int{}
	var many []raftctl.Server
	for i := range 40 {
		many = append(many, raftctl.Server{ID: fmt.Sprintf("agent-%d", i), Address: "x"})
	}
	for _, s := range many {
		r, ok := chooseRelay(s.ID, "v1", append(servers[:3:3], many...), none)
		if !ok {
			t.Fatalf("%s: no relay", s.ID)
		}
		counts[r.ID]++
	}
	if counts["v2"] < 10 || counts["v3"] < 10 {
		t.Fatalf("40 agents over two relays: %v", counts)
	}
}

// Two non-voters renew through the voters that do not lead; when the
// relay of one stops, that one renews with the leader directly.
func TestANonvoterWhoseRelayStopsRenewsWithTheLeader(t *testing.T) {
	leader, voters, others := startThreeVotersOfFive(t, "r")
	nonvoter := others[0]
	// A non-voter that knew its leader before its log held the
	// configuration keeps the configuration it read (none) for
	// relayConfigEvery, and renews directly meanwhile.
	var relay *Agent
	waitFor(t, 20*time.Second, "the non-voter's relay, a voter that does not lead", func() error {
		r, ok := nonvoter.leaseRelays.pick(nonvoter.raftID, leader.raftID, time.Now(), nonvoter.raft.Configuration)
		if !ok {
			return fmt.Errorf("%s has no relay", nonvoter.cfg.NodeID)
		}
		for _, v := range voters {
			if v.raftID == r.ID {
				relay = v
				return nil
			}
		}
		return fmt.Errorf("%s relays through %s, not a voter that does not lead", nonvoter.cfg.NodeID, r.ID)
	})
	waitFor(t, 20*time.Second, "renewals relayed and granted", func() error {
		if n := relay.raft.RelayedLeases(); n < 3 {
			return fmt.Errorf("%s relayed %d renewals", relay.cfg.NodeID, n)
		}
		if !nonvoter.inContact() {
			return fmt.Errorf("%s has no current lease", nonvoter.cfg.NodeID)
		}
		return nil
	})
	if n := leader.raft.RelayedLeases(); n != 0 {
		t.Fatalf("the leader relayed %d renewals", n)
	}

	if err := relay.Shutdown(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitFor(t, 20*time.Second, "a renewal granted after the relay stopped", func() error {
		nonvoter.lease.mu.Lock()
		sent := nonvoter.lease.sentAt
		nonvoter.lease.mu.Unlock()
		if !sent.After(stopped) {
			return fmt.Errorf("%s's last grant was asked %s before the relay stopped", nonvoter.cfg.NodeID, stopped.Sub(sent))
		}
		return nil
	})
	nonvoter.leaseRelays.mu.Lock()
	until, avoided := nonvoter.leaseRelays.avoid[relay.raftID]
	nonvoter.leaseRelays.mu.Unlock()
	if !avoided || !until.After(stopped) {
		t.Fatalf("%s does not avoid its stopped relay %s", nonvoter.cfg.NodeID, relay.cfg.NodeID)
	}
}
