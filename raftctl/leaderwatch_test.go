package raftctl

import (
	"testing"
	"time"
)

// waitLeaderSignal waits for a signal on ch that finds n leading.
func waitLeaderSignal(t *testing.T, n *Node, ch <-chan struct{}) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-ch:
			if n.IsLeader() {
				return
			}
		case <-deadline:
			t.Fatalf("%s: no signal found it leading within 10 s", n.ID())
		}
	}
}

func TestTheServerThatWinsAnElectionIsToldItLeads(t *testing.T) {
	nodes := make([]*Node, 3)
	signals := make(map[*Node]<-chan struct{})
	for i, id := range []string{"w1", "w2", "w3"} {
		cfg := testConfig(id, "")
		cfg.InMemory = true
		nodes[i] = startNode(t, cfg)
		ch, unsubscribe := nodes[i].SubscribeLeader()
		t.Cleanup(unsubscribe)
		signals[nodes[i]] = ch
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	first := waitLeader(t, nodes...)
	waitLeaderSignal(t, first, signals[first])

	// The followers were told too (they learned of a leader), and once the
	// leader is gone, the one that wins the next election is told it leads:
	// nothing polls IsLeader for it.
	rest := followers(first, nodes...)
	for _, f := range rest {
		select {
		case <-signals[f]:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not told of the leader %s", f.ID(), first.ID())
		}
	}
	if err := first.Shutdown(); err != nil {
		t.Fatal(err)
	}
	next := waitLeader(t, rest...)
	waitLeaderSignal(t, next, signals[next])
}
