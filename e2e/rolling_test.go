package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestRollingRestartUnderWrites restarts every node one at a time, the way
// a deploy does (SIGTERM the agent, which leaves gracefully; restart the
// app; start the agent again with the same ID and data dir), while a
// client keeps writing. Quorum is never lost, no acknowledged write is
// lost, and the table is balanced at the end.
func TestRollingRestartUnderWrites(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 5, "-partitions", "32", "-replication-factor", "3")

	var mu sync.Mutex
	up := map[*appNode]bool{}
	for _, n := range nodes {
		up[n] = true
	}
	liveNodes := func() []*appNode {
		mu.Lock()
		defer mu.Unlock()
		var out []*appNode
		for _, n := range nodes {
			if up[n] {
				out = append(out, n)
			}
		}
		return out
	}

	// A watcher polls every live agent's quorum while the restarts go on.
	var quorumLost atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			for _, n := range liveNodes() {
				var st struct {
					Quorum string `json:"quorum"`
				}
				if n.GetJSON("/v1/status", &st) == nil && st.Quorum == "lost" {
					quorumLost.Add(1)
				}
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}()
	w := &writer{acked: map[string]string{}}
	go func() {
		defer wg.Done()
		w.run(ctx, liveNodes, "rolling", 1<<30)
	}()

	start := time.Now()
	for _, n := range nodes {
		mu.Lock()
		up[n] = false
		mu.Unlock()
		if err := n.Stop(60 * time.Second); err != nil {
			t.Fatalf("SIGTERM %s: %v", n.ID, err)
		}
		n.app.StopApp(syscall.SIGTERM)
		n.startApp(t)
		n.start("-join", liveNodes()[0].GossipAddr())
		mu.Lock()
		up[n] = true
		mu.Unlock()
		waitSettled(t, nodes, 3)
		checkBalancedEventually(t, n.node, ids(plainNodes(nodes)))
	}
	t.Logf("rolling restart of %d nodes took %s", len(nodes), time.Since(start).Round(time.Millisecond))
	cancel()
	wg.Wait()

	if q := quorumLost.Load(); q != 0 {
		t.Fatalf("quorum was reported lost %d times during the rolling restart", q)
	}
	acked := w.snapshot()
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged (of %d tried) during the restarts", len(acked), w.tried)
	}
	t.Logf("%d of %d writes acknowledged", len(acked), w.tried)
	checkAllReadable(t, nodes, acked)
	checkSignatures(t, nodes)
	for _, n := range nodes {
		if st, err := nodes[0].MemberStatus(n.ID); err != nil || st != "alive" {
			t.Fatalf("%s is %s (%v) after the rolling restart", n.ID, st, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
