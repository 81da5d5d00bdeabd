package gossip

import (
	"fmt"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// seesAlive waits until m holds id alive.
func seesAlive(t *testing.T, m *member, id string, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		if n, ok := m.Member(id); !ok || n.State != StateAlive {
			return fmt.Errorf("%s sees %s as %+v", m.nodeID, id, n)
		}
		return nil
	})
}

func TestADeadNodeBackAtItsAddressIsReconnectedWithoutAJoin(t *testing.T) {
	ms := cluster(t, 2, nil)
	survivor, victim := ms[0], ms[1]
	_, portStr, _ := net.SplitHostPort(victim.Addr())
	port, _ := strconv.Atoi(portStr)
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		if n, _ := survivor.Member("n2"); n.State != StateDead {
			return fmt.Errorf("n2 is %s", n.State)
		}
		return nil
	})

	// The same node comes back at its address and joins nobody, as a node
	// on the far side of a healed partition does: the survivor's reconnect
	// loop finds it.
	cfg := testConfig("n2")
	cfg.BindPort = port
	back := start(t, cfg)
	seesAlive(t, survivor, "n2", 10*time.Second)
	seesAlive(t, back, "n1", 10*time.Second)
	if evs := survivor.eventsAbout("n2"); indexOf(evs, EventJoin) < 0 {
		t.Fatalf("the survivor saw no join of n2 back: %v", evs)
	}
}

func TestSeedsReconnectANodeThatNeverJoined(t *testing.T) {
	first := start(t, testConfig("n1"))
	cfg := testConfig("n2")
	addr := first.Addr()
	cfg.ReconnectSeeds = func() map[string]string { return map[string]string{"n1": addr} }
	second := start(t, cfg)
	seesAlive(t, second, "n1", 10*time.Second)
	seesAlive(t, first, "n2", 10*time.Second)
}

func TestReconnectTargets(t *testing.T) {
	now := time.Now()
	g := &Gossip{
		nodeID: "self",
		view: map[string]*Node{
			"back":    {ID: "back", State: StateAlive},
			"suspect": {ID: "suspect", State: StateSuspect},
			"dead":    {ID: "dead", State: StateDead},
		},
		lost: map[string]lostNode{
			"dead":   {addr: "10.0.0.1:1", since: now.Add(-time.Minute)},
			"back":   {addr: "10.0.0.2:1", since: now.Add(-time.Minute)},
			"old":    {addr: "10.0.0.3:1", since: now.Add(-2 * time.Hour)},
			"recent": {addr: "10.0.0.4:1", since: now.Add(-time.Second)},
		},
		reconnect: reconnector{
			timeout: time.Hour,
			seeds: func() map[string]string {
				return map[string]string{"self": "10.0.0.9:1", "suspect": "10.0.0.5:1", "seeded": "10.0.0.6:1", "dead": "10.0.0.7:1", "blank": ""}
			},
			tried: map[string]time.Time{},
		},
	}
	got := g.reconnectTargets(now)
	want := map[string]string{"dead": "10.0.0.1:1", "recent": "10.0.0.4:1", "seeded": "10.0.0.6:1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("targets %v, want %v (alive, suspect, self, blank and timed-out nodes skipped; a lost node's own address wins over a seed)", got, want)
	}
	if _, ok := g.lost["old"]; ok {
		t.Fatalf("a node lost for longer than the timeout is still remembered")
	}

	// At most maxReconnectsPerRound a round, least recently tried first.
	g.reconnect.seeds = nil
	g.lost = map[string]lostNode{}
	for i := 0; i < maxReconnectsPerRound+2; i++ {
		id := fmt.Sprintf("n%d", i)
		g.lost[id] = lostNode{addr: "10.1.0." + strconv.Itoa(i) + ":1", since: now}
		g.reconnect.tried["10.1.0."+strconv.Itoa(i)+":1"] = now.Add(time.Duration(-i) * time.Second)
	}
	got = g.reconnectTargets(now)
	if len(got) != maxReconnectsPerRound {
		t.Fatalf("%d targets in one round, want %d", len(got), maxReconnectsPerRound)
	}
	for _, id := range []string{"n0", "n1"} {
		if _, ok := got[id]; ok {
			t.Fatalf("%s, tried most recently, was picked before nodes waiting longer: %v", id, got)
		}
	}
}
