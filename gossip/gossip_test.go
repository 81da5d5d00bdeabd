package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestThreeNodesJoinAndSeeEachOthersMetadata(t *testing.T) {
	ms := cluster(t, 3, nil)

	for _, m := range ms {
		members := m.Members()
		if len(members) != 3 {
			t.Fatalf("%s: %d members, want 3", m.nodeID, len(members))
		}
		for i, node := range members {
			want := ms[i] // n1, n2, n3: sorted by ID
			if node.ID != want.nodeID {
				t.Errorf("%s: member %d is %q, want %q (sorted by ID)", m.nodeID, i, node.ID, want.nodeID)
			}
			if node.Addr != want.Addr() {
				t.Errorf("%s: %s at %q, want %q", m.nodeID, node.ID, node.Addr, want.Addr())
			}
			wantMeta := testConfig(want.nodeID).Meta
			wantMeta.Boot = want.LocalNode().Meta.Boot // drawn by New
			if wantMeta.Boot == 0 {
				t.Errorf("%s: no Boot drawn", want.nodeID)
			}
			if !reflect.DeepEqual(node.Meta, wantMeta) {
				t.Errorf("%s: %s meta %+v, want %+v", m.nodeID, node.ID, node.Meta, wantMeta)
			}
		}
		if got := m.NumMembers(); got != 3 {
			t.Errorf("%s: NumMembers %d, want 3", m.nodeID, got)
		}
		// Every node reports the two others' joins and never its own.
		for _, other := range ms {
			if other == m {
				if evs := m.eventsAbout(other.nodeID); len(evs) != 0 {
					t.Errorf("%s: events about itself: %v", m.nodeID, evs)
				}
				continue
			}
			// The view changes before the event reaches the recorder.
			eventually(t, 2*time.Second, func() error {
				if evs := m.eventsAbout(other.nodeID); indexOf(evs, EventJoin) < 0 {
					return fmt.Errorf("%s: no join event for %s, got %v", m.nodeID, other.nodeID, evs)
				}
				return nil
			})
		}
	}
	if addr := ms[0].Addr(); !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Errorf("Addr() = %q, want 127.0.0.1 with the bound port", addr)
	}
	if n, ok := ms[1].Member("n1"); !ok || n.State != StateAlive {
		t.Errorf("Member(n1) = %+v, %v", n, ok)
	}
	if _, ok := ms[1].Member("nobody"); ok {
		t.Error("Member(nobody) found")
	}
}

func TestMetadataUpdateIsSeenAsUpdate(t *testing.T) {
	ms := cluster(t, 2, nil)
	a, b := ms[0], ms[1]

	newMeta := a.LocalNode().Meta
	newMeta.AppUnhealthy = true
	newMeta.APIAddr = "127.0.0.1:8500"
	if err := a.UpdateMeta(newMeta); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	if got := a.LocalNode().Meta; !reflect.DeepEqual(got, newMeta) {
		t.Errorf("LocalNode meta %+v, want %+v", got, newMeta)
	}
	eventually(t, 5*time.Second, func() error {
		ev, ok := b.lastEvent("n1", EventUpdate)
		if !ok {
			return fmt.Errorf("no update event, saw %v", b.eventsAbout("n1"))
		}
		if !reflect.DeepEqual(ev.Node.Meta, newMeta) {
			return fmt.Errorf("update carries %+v, want %+v", ev.Node.Meta, newMeta)
		}
		return nil
	})
	if n, _ := b.Member("n1"); !reflect.DeepEqual(n.Meta, newMeta) || n.State != StateAlive {
		t.Errorf("b's view of n1: %+v", n)
	}

	tooLong := newMeta
	tooLong.Zone = strings.Repeat("z", 300)
	if err := a.UpdateMeta(tooLong); !errors.Is(err, ErrMetaTooLong) {
		t.Errorf("UpdateMeta with a 300-byte zone: %v, want ErrMetaTooLong", err)
	}
}

func TestNodeShutDownWithoutLeavingIsSuspectedThenDead(t *testing.T) {
	ms := cluster(t, 3, nil)
	victim := ms[2]
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		eventually(t, 15*time.Second, func() error {
			evs := m.eventsAbout("n3")
			s, d := indexOf(evs, EventSuspect), indexOf(evs, EventDead)
			if s < 0 || d < 0 {
				return fmt.Errorf("%s: want suspect then dead for n3, saw %v", m.nodeID, evs)
			}
			if s > d {
				return fmt.Errorf("%s: dead before suspect: %v", m.nodeID, evs)
			}
			return nil
		})
		if n, _ := m.Member("n3"); n.State != StateDead {
			t.Errorf("%s: n3 is %s, want dead", m.nodeID, n.State)
		}
		if evs := m.eventsAbout("n3"); indexOf(evs, EventLeft) >= 0 {
			t.Errorf("%s: a crash reported as left: %v", m.nodeID, evs)
		}
		if got := m.NumMembers(); got != 2 {
			t.Errorf("%s: NumMembers %d, want 2", m.nodeID, got)
		}
	}
}

func TestGracefulLeaveIsSeenAsLeft(t *testing.T) {
	ms := cluster(t, 3, nil)
	leaver := ms[2]
	if err := leaver.Leave(3 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := leaver.Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if _, err := leaver.Join(context.Background(), []string{ms[0].Addr()}); !errors.Is(err, ErrLeft) {
		t.Errorf("Join after Leave: %v, want ErrLeft", err)
	}
	for _, m := range ms[:2] {
		eventually(t, 5*time.Second, func() error {
			if n, _ := m.Member("n3"); n.State != StateLeft {
				return fmt.Errorf("%s: n3 is %q, want left; events %v", m.nodeID, n.State, m.eventsAbout("n3"))
			}
			if _, ok := m.lastEvent("n3", EventLeft); !ok {
				return fmt.Errorf("%s: no left event yet: %v", m.nodeID, m.eventsAbout("n3"))
			}
			return nil
		})
		evs := m.eventsAbout("n3")
		if indexOf(evs, EventLeft) < 0 || indexOf(evs, EventDead) >= 0 {
			t.Errorf("%s: events about n3 %v, want left and no dead", m.nodeID, evs)
		}
	}
}

func TestNodeWithAnotherKeyCannotJoin(t *testing.T) {
	keyA, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyB, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ms := cluster(t, 2, func(c *Config) { c.SecretKey = keyA; c.Label = "steward-test" })

	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"other key", keyB},
		{"no key", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("intruder")
			cfg.SecretKey = tc.key
			cfg.Label = "steward-test"
			intruder := start(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
			defer cancel()
			n, err := intruder.Join(ctx, []string{ms[0].Addr()})
			if !errors.Is(err, ErrJoinFailed) || n != 0 {
				t.Fatalf("Join = %d, %v; want 0 and ErrJoinFailed", n, err)
			}
			for _, m := range ms {
				if got := m.NumMembers(); got != 2 {
					t.Errorf("%s: NumMembers %d after the intruder's attempt, want 2", m.nodeID, got)
				}
				if _, ok := m.Member("intruder"); ok {
					t.Errorf("%s knows the intruder", m.nodeID)
				}
			}
			if got := intruder.NumMembers(); got != 1 {
				t.Errorf("intruder sees %d members, want 1", got)
			}
		})
	}
}

func TestSameIDAtNewAddressIsAcceptedOnceOldEntryIsDead(t *testing.T) {
	ms := cluster(t, 3, nil)
	oldAddr := ms[2].Addr()
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	reclaim := testConfig("n3").DeadNodeReclaimTime
	for _, m := range ms[:2] {
		eventually(t, 15*time.Second, func() error {
			n, _ := m.Member("n3")
			if n.State != StateDead {
				return fmt.Errorf("%s: n3 is %q, want dead", m.nodeID, n.State)
			}
			// memberlist accepts the new address only once the old entry
			// has been dead for DeadNodeReclaimTime; our Since is observed
			// just after memberlist's own state change.
			if age := time.Since(n.Since); age <= reclaim+100*time.Millisecond {
				return fmt.Errorf("%s: n3 dead for only %v", m.nodeID, age)
			}
			return nil
		})
	}

	cfg := testConfig("n3")
	cfg.Meta.Version = "restarted"
	back := start(t, cfg)
	if back.Addr() == oldAddr {
		t.Fatalf("restarted node got the old address %s; the test needs a new one", oldAddr)
	}
	joinTo(t, back, ms[0])
	for _, m := range ms[:2] {
		eventually(t, 10*time.Second, func() error {
			n, _ := m.Member("n3")
			if n.State != StateAlive || n.Addr != back.Addr() || n.Meta.Version != "restarted" {
				return fmt.Errorf("%s: n3 is %+v, want alive at %s", m.nodeID, n, back.Addr())
			}
			ev, ok := m.lastEvent("n3", EventJoin)
			if !ok || ev.Node.Addr != back.Addr() {
				return fmt.Errorf("%s: no join event at the new address yet: %v", m.nodeID, m.eventsAbout("n3"))
			}
			return nil
		})
		count := 0
		for _, n := range m.Members() {
			if n.ID == "n3" {
				count++
			}
		}
		if count != 1 {
			t.Errorf("%s: %d entries for n3", m.nodeID, count)
		}
		if got := m.NumMembers(); got != 3 {
			t.Errorf("%s: NumMembers %d, want 3", m.nodeID, got)
		}
	}
}

func TestJoinUnreachableGivesUpAtDeadline(t *testing.T) {
	m := start(t, testConfig("lonely"))
	// A port that was free a moment ago: nothing listens there.
	probe := start(t, testConfig("gone"))
	dead := probe.Addr()
	if err := probe.Shutdown(); err != nil {
		t.Fatal(err)
	}

	const budget = 700 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	began := time.Now()
	n, err := m.Join(ctx, []string{dead})
	took := time.Since(began)
	if n != 0 || !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("Join = %d, %v; want 0 and ErrJoinFailed", n, err)
	}
	if !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("error %q should name %s and the deadline", err, dead)
	}
	if took < budget || took > budget+2*time.Second {
		t.Errorf("Join gave up after %v, want about %v", took, budget)
	}
	if _, err := m.Join(context.Background(), nil); !errors.Is(err, ErrNoJoinAddrs) {
		t.Errorf("Join(nil) = %v", err)
	}
}

func TestShutdownIsIdempotentAndClosesEvents(t *testing.T) {
	g, err := New(testConfig("solo"))
	if err != nil {
		t.Fatal(err)
	}
	if got := g.NumMembers(); got != 1 {
		t.Errorf("NumMembers %d, want 1", got)
	}
	if got := g.HealthScore(); got != 0 {
		t.Errorf("HealthScore %d, want 0 for an idle node", got)
	}
	if err := g.UpdateMeta(Meta{RaftID: "solo", Zone: "z2"}); err != nil {
		t.Errorf("UpdateMeta alone: %v", err)
	}
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, open := <-g.Events(); open {
		t.Error("Events channel still open after Shutdown")
	}
	if _, err := g.Join(context.Background(), []string{"127.0.0.1:1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown: %v", err)
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown: %v", err)
	}
	if err := g.UpdateMeta(Meta{}); !errors.Is(err, ErrShutdown) {
		t.Errorf("UpdateMeta after Shutdown: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, tweak := range map[string]func(*Config){
		"no node ID":                 func(c *Config) { c.NodeID = "" },
		"bind not an IP":             func(c *Config) { c.BindAddr = "localhost" },
		"bad profile":                func(c *Config) { c.Profile = "moon" },
		"short key":                  func(c *Config) { c.SecretKey = []byte("short") },
		"meta too long":              func(c *Config) { c.Meta.AppAddr = strings.Repeat("a", 256) },
		"label too long":             func(c *Config) { c.Label = strings.Repeat("l", 256) },
		"negative reconnect timeout": func(c *Config) { c.ReconnectTimeout = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("bad")
			tweak(cfg)
			g, err := New(cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				if g != nil {
					_ = g.Shutdown()
				}
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestEventQueueNeverBlocksAndKeepsOrder(t *testing.T) {
	q := newEventQueue()
	const n = 10000 // far beyond any channel buffer, nobody reading
	for i := range n {
		q.push(Event{Type: EventUpdate, Node: Node{ID: fmt.Sprint(i)}})
	}
	stop := make(chan struct{})
	for i := range n {
		ev, ok := q.pop(stop)
		if !ok || ev.Node.ID != fmt.Sprint(i) {
			t.Fatalf("pop %d = %+v, %v", i, ev, ok)
		}
	}
	close(stop)
	if _, ok := q.pop(stop); ok {
		t.Error("pop on an empty queue after stop returned an event")
	}
	q.close()
	q.push(Event{Type: EventJoin})
	if len(q.items) != 0 {
		t.Error("push after close queued an event")
	}
}

func TestParseSuspectLine(t *testing.T) {
	id, ok := parseSuspectLine([]byte("[INFO] memberlist: Suspect node-7 has failed, no acks received\n"))
	if !ok || id != "node-7" {
		t.Errorf("got %q, %v", id, ok)
	}
	for _, line := range []string{
		"[DEBUG] memberlist: Failed UDP ping: node-7 (timeout reached)\n",
		"[INFO] memberlist: Suspect  has failed, no acks received\n",
		"[INFO] memberlist: Suspect node-7 has failed\n",
	} {
		if id, ok := parseSuspectLine([]byte(line)); ok {
			t.Errorf("%q parsed as suspicion of %q", line, id)
		}
	}
}

func TestEventTypeStrings(t *testing.T) {
	want := map[EventType]string{
		EventJoin: "join", EventSuspect: "suspect", EventAlive: "alive",
		EventDead: "dead", EventLeft: "left", EventUpdate: "update",
		EventType(0): "EventType(0)",
	}
	for et, s := range want {
		if et.String() != s {
			t.Errorf("%d.String() = %q, want %q", int(et), et.String(), s)
		}
	}
}

func TestProfiles(t *testing.T) {
	for _, p := range []Profile{ProfileLocal, ProfileLAN, ProfileWAN} {
		if _, err := p.MemberlistConfig(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := Profile("fast").MemberlistConfig(); !errors.Is(err, ErrUnknownProfile) {
		t.Errorf("an unknown profile's memberlist config: %v, want ErrUnknownProfile", err)
	}
	local, _ := ProfileLocal.MemberlistConfig()
	lan, _ := ProfileLAN.MemberlistConfig()
	if local.ProbeInterval >= lan.ProbeInterval || local.ProbeTimeout >= local.ProbeInterval {
		t.Errorf("local probe %v/%v should be faster than LAN %v and timeout < interval",
			local.ProbeInterval, local.ProbeTimeout, lan.ProbeInterval)
	}
	if lan.ProbeInterval != 500*time.Millisecond || lan.ProbeTimeout != 200*time.Millisecond || lan.GossipInterval != 100*time.Millisecond || lan.SuspicionMult != 4 {
		t.Errorf("lan is not DefaultLANConfig with 500 ms probes, a 200 ms probe timeout and 100 ms gossip: %v, %v, %v, %d",
			lan.ProbeInterval, lan.ProbeTimeout, lan.GossipInterval, lan.SuspicionMult)
	}
}

func TestSuspectThatAnswersAProbeIsAliveAgain(t *testing.T) {
	ms := cluster(t, 2, nil)
	a := ms[0]
	// Feed a's log writer the line memberlist writes when a probe fails,
	// as a busy machine would cause. n2 is in fact healthy, so a's next
	// probe of it is answered.
	w := &memberlistLog{next: io.Discard, onSuspect: a.observeSuspect}
	if _, err := w.Write([]byte("[INFO] memberlist: Suspect n2 has failed, no acks received\n")); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Member("n2"); n.State != StateSuspect {
		t.Fatalf("n2 is %q after the suspect line, want suspect", n.State)
	}
	eventually(t, 5*time.Second, func() error {
		evs := a.eventsAbout("n2")
		s, al := indexOf(evs, EventSuspect), indexOf(evs, EventAlive)
		if s < 0 || al < s {
			return fmt.Errorf("want suspect then alive, saw %v", evs)
		}
		return nil
	})
	if n, _ := a.Member("n2"); n.State != StateAlive {
		t.Errorf("n2 is %q, want alive", n.State)
	}
	if evs := a.eventsAbout("n2"); indexOf(evs, EventDead) >= 0 {
		t.Errorf("a healthy node was reported dead: %v", evs)
	}
}

// A second process with a taken node ID learns, from the state its join
// receives, which process has the ID, and that it is running; once that
// one is gone, it no longer answers (a restart at a new address is not
// a duplicate).
func TestANewcomerWithATakenIDSeesWhichProcessHasIt(t *testing.T) {
	ms := cluster(t, 2, nil)
	dup := start(t, testConfig("n2"))
	joinTo(t, dup, ms[0])
	claim, ok := dup.IDClaimedBy()
	if !ok || claim.Addr != ms[1].Addr() {
		t.Fatalf("the newcomer sees the claim %+v (%v), want n2 at %s", claim, ok, ms[1].Addr())
	}
	if !dup.ClaimantAnswers(claim) {
		t.Fatal("the running n2 does not answer the newcomer's ping")
	}
	if _, ok := ms[0].IDClaimedBy(); ok {
		t.Fatal("n1 reports a claim on its own ID")
	}
	if err := ms[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if dup.ClaimantAnswers(claim) {
		t.Fatal("a stopped n2 answers")
	}
}

// A node restarted while a peer still holds it suspect (a SIGKILL and a
// restart within memberlist's suspicion timeout, 30 s on a WAN) refutes
// the suspicion with a new incarnation. memberlist tells the peer's
// EventDelegate only when the metadata changed; Meta.Boot, drawn anew by
// every process, makes it change, so the peer reports the node alive
// (an update) at once instead of after one of its own probes reaches it
// (5 s apart on a WAN).
func TestARestartedNodeIsAliveAgainAtOnceForAPeerThatHeldItSuspect(t *testing.T) {
	restartWhileHeld(t, true)
}

// A peer whose memberlist never suspected the node (its failure detector
// failed it on another agent's word) sees the restart as an update only:
// the new Boot makes it an alive event too, which makes the detector probe
// the node at once rather than at its next probe of a failed node.
func TestARestartSeenOnlyAsAnUpdateIsReportedAlive(t *testing.T) {
	restartWhileHeld(t, false)
}

func restartWhileHeld(t *testing.T, suspectFirst bool) {
	wan := func(c *Config) { c.Profile = ProfileWAN }
	a := start(t, withTweak(testConfig("n1"), wan))
	b := start(t, withTweak(testConfig("n2"), wan))
	joinTo(t, b, a)
	// The restart comes back on the port memberlist found free for both
	// TCP and UDP: the same address, the same node to memberlist.
	_, portText, err := net.SplitHostPort(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if n, _ := a.Member("n2"); n.State != StateAlive {
			return fmt.Errorf("n1 sees n2 as %q", n.State)
		}
		return nil
	})
	firstBoot := b.LocalNode().Meta.Boot
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if suspectFirst {
		// n1's probe of n2 fails (the line memberlist logs), as it would
		// within a probe interval of the crash.
		w := &memberlistLog{next: io.Discard, onSuspect: a.observeSuspect}
		if _, err := w.Write([]byte("[INFO] memberlist: Suspect n2 has failed, no acks received\n")); err != nil {
			t.Fatal(err)
		}
		if n, _ := a.Member("n2"); n.State != StateSuspect {
			t.Fatalf("n2 is %q after the failed probe, want suspect", n.State)
		}
	}
	seenBefore := len(a.eventsAbout("n2"))

	back := start(t, withTweak(testConfig("n2"), func(c *Config) { wan(c); c.BindPort = port }))
	if back.LocalNode().Meta.Boot == firstBoot {
		t.Fatal("the restarted process drew the same Boot")
	}
	joinTo(t, back, a)
	// Within 2 s: memberlist's word, not n1's next probe (5 s apart).
	eventually(t, 2*time.Second, func() error {
		evs := a.eventsAbout("n2")[seenBefore:]
		if n, _ := a.Member("n2"); n.State != StateAlive || indexOf(evs, EventUpdate) < 0 || indexOf(evs, EventAlive) < 0 {
			return fmt.Errorf("n1 sees the restarted n2 as %q, reported %v; want alive, with an update and an alive event", n.State, evs)
		}
		return nil
	})
}

// withTweak applies tweak to cfg and returns it.
func withTweak(cfg *Config, tweak func(*Config)) *Config {
	tweak(cfg)
	return cfg
}
