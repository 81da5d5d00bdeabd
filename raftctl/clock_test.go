package raftctl

import (
	"testing"
	"time"
)

func TestPeerClockAnswersWithThePeersWallClock(t *testing.T) {
	var nodes []*Node
	for _, id := range []string{"c1", "c2"} {
		cfg := testConfig(id, "")
		cfg.InMemory = true
		nodes = append(nodes, startNode(t, cfg))
	}
	before := time.Now()
	peer, rtt, err := nodes[0].PeerClock(ctxTimeout(t, 2*time.Second), nodes[1].Addr())
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	// One process, one clock: the peer read it between the two readings.
	if peer.Before(before) || peer.After(after) {
		t.Fatalf("peer clock %s outside this exchange (%s to %s)", peer, before, after)
	}
	if rtt <= 0 || rtt > after.Sub(before) {
		t.Fatalf("round trip %s, the exchange took %s", rtt, after.Sub(before))
	}
	if err := nodes[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := nodes[0].PeerClock(ctxTimeout(t, 2*time.Second), nodes[1].Addr()); err == nil {
		t.Fatal("a node that is shut down answered with its clock")
	}
}
