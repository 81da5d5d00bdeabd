package raftctl

import (
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
