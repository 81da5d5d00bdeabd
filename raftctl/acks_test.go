package raftctl

import (
	"sync"
	"testing"
	"time"
)

// The leader reports a follower that stops answering its AppendEntries to
// the unreachable handler, within moments (raft heartbeats it several times
// a second), and never a follower that answers.
func TestTheLeaderReportsAFollowerThatStopsAnswering(t *testing.T) {
	nodes := make([]*Node, 3)
	for i, id := range []string{"u1", "u2", "u3"} {
		nodes[i] = startNode(t, testConfig(id, t.TempDir()))
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	var mu sync.Mutex
	reported := map[string]int{}
	leader.SetUnreachableHandler(func(id string) {
		mu.Lock()
		reported[id]++
		mu.Unlock()
	})
	fs := followers(leader, nodes...)
	gone, live := fs[0], fs[1]
	if err := gone.Shutdown(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the leader reports "+gone.ID(), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return reported[gone.ID()] > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if n := reported[live.ID()]; n > 0 {
		t.Fatalf("the leader reported %s, which answers, %d times", live.ID(), n)
	}
}
