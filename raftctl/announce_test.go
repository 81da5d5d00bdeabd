package raftctl

import (
	"testing"
	"time"
)

// With a commit timeout far longer than the test, the followers still apply
// a command within moments of the leader: the leader announces each commit
// with a barrier instead of leaving them to learn it from its next idle
// AppendEntries.
func TestFollowersApplyACommandWithoutWaitingForTheCommitTimeout(t *testing.T) {
	const commitTimeout = time.Minute
	nodes := make([]*Node, 3)
	for i, id := range []string{"n1", "n2", "n3"} {
		cfg := testConfig(id, t.TempDir())
		cfg.CommitTimeout, cfg.AnnounceCommits = commitTimeout, true
		nodes[i] = startNode(t, cfg)
	}
	for _, n := range nodes {
		if err := n.Bootstrap(serversOf(nodes...)); err != nil {
			t.Fatalf("Bootstrap on %s: %v", n.ID(), err)
		}
	}
	leader := waitLeader(t, nodes...)
	for i, cmd := range []string{"bootstrap", "upsert"} {
		c := bootstrapCommand("n1", "n2", "n3")
		if cmd == "upsert" {
			c = upsertCommand("n4", int64(i+1))
		}
		if _, err := leader.Apply(c); err != nil {
			t.Fatalf("%s on the leader: %v", cmd, err)
		}
		applied := leader.Stats().AppliedIndex
		for _, f := range followers(leader, nodes...) {
			eventually(t, commitTimeout/6, f.ID()+" applies the "+cmd+" the leader applied", func() bool {
				return f.Stats().AppliedIndex >= applied
			})
		}
	}
}
