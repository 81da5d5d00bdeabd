package raftctl

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The failure detector pings a suspect every probe interval: the pings to
// one peer share a connection, and a dropped one is redialled.
func TestPingsToAPeerShareOneConnectionAndRedialWhenItDrops(t *testing.T) {
	leader, nodes := startCluster(t, nil, "p1", "p2")
	follower := followers(leader, nodes...)[0]
	addr := string(leader.raft.Leader())
	liveConns := func() int {
		leader.controlMu.Lock()
		defer leader.controlMu.Unlock()
		return len(leader.controlConns)
	}
	ping := func() {
		t.Helper()
		if _, err := follower.PingStatus(ctxTimeout(t, 5*time.Second), addr); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		ping()
	}
	if n := liveConns(); n != 1 {
		t.Fatalf("after 5 pings the peer holds %d control connections, want 1", n)
	}

	// The peer drops it (as after TransportTimeout of silence): the next
	// ping opens another and succeeds.
	leader.controlMu.Lock()
	for c := range leader.controlConns {
		c.Close()
	}
	leader.controlMu.Unlock()
	eventually(t, 5*time.Second, "the peer's handler to end", func() bool { return liveConns() == 0 })
	ping()
	if n := liveConns(); n != 1 {
		t.Fatalf("after a dropped connection and a ping the peer holds %d, want 1", n)
	}

	// After Shutdown, no ping goes out and no connection is left open.
	if err := follower.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := follower.PingStatus(ctxTimeout(t, time.Second), addr); err == nil {
		t.Fatal("a ping after Shutdown succeeded")
	}
	eventually(t, 5*time.Second, "the kept connection to close", func() bool { return liveConns() == 0 })
}

// A ping that names a server is answered only by that server: another
// agent answering at the address (a dead node's IP given to a new machine,
// its port reused) says so instead of passing for it. Unnamed, any server
// answers, as before.
func TestAPingNamingAServerIsAnsweredOnlyByThatServer(t *testing.T) {
	leader, nodes := startCluster(t, nil, "n1", "n2")
	follower := followers(leader, nodes...)[0]
	addr := string(leader.raft.Leader())

	if _, err := follower.PingServer(ctxTimeout(t, 5*time.Second), leader.cfg.ServerID, addr); err != nil {
		t.Fatalf("a ping naming the server at %s: %v", addr, err)
	}
	_, err := follower.PingServer(ctxTimeout(t, 5*time.Second), "someone-else", addr)
	if !errors.Is(err, ErrOtherServer) || !strings.Contains(err.Error(), leader.cfg.ServerID) {
		t.Fatalf("a ping naming another server: %v, want ErrOtherServer naming %s", err, leader.cfg.ServerID)
	}
	if _, err := follower.PingServer(ctxTimeout(t, 5*time.Second), "", addr); err != nil {
		t.Fatalf("an unnamed ping: %v", err)
	}
	// The refusal leaves the kept connection usable.
	if _, err := follower.PingServer(ctxTimeout(t, 5*time.Second), leader.cfg.ServerID, addr); err != nil {
		t.Fatalf("a named ping after a refusal: %v", err)
	}
}

// An agent of an earlier version reads no request in a ping and refuses a
// longer one: a named ping to it is sent again without the name (it cannot
// be told apart from another server, as before), and later pings to it go
// unnamed at once, so a rolling upgrade marks nobody failed.
func TestANamedPingToAnEarlierVersionFallsBackToAPlainOne(t *testing.T) {
	current := controlHandlers[kindPing]
	earlier := current
	earlier.maxRequest = 0
	earlier.serve = func(n *Node, remote string, _ []byte) ([]byte, error) { return current.serve(n, remote, nil) }
	controlHandlers[kindPing] = earlier
	t.Cleanup(func() { controlHandlers[kindPing] = current }) // after the nodes stop
	leader, nodes := startCluster(t, nil, "e1", "e2")
	follower := followers(leader, nodes...)[0]
	addr := string(leader.raft.Leader())

	for i := 0; i < 3; i++ {
		if _, err := follower.PingServer(ctxTimeout(t, 5*time.Second), "whoever", addr); err != nil {
			t.Fatalf("ping %d of an earlier version's agent: %v", i, err)
		}
	}
	if !follower.pingConns.unnamed(addr) {
		t.Fatal("the address is not remembered as an earlier version's")
	}
}
