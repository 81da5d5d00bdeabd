package raftctl

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// With a commit timeout far longer than the test, the followers still apply
// a command within moments of the leader: the leader announces each commit
// instead of leaving them to learn it from its next idle AppendEntries, and
// the announcement adds nothing to their logs (it used to be a barrier
// entry, which each follower wrote and fsynced before it applied).
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
		before := leader.Stats().LastIndex
		if _, err := leader.Apply(c); err != nil {
			t.Fatalf("%s on the leader: %v", cmd, err)
		}
		applied := leader.Stats().AppliedIndex
		for _, f := range followers(leader, nodes...) {
			eventually(t, commitTimeout/6, f.ID()+" applies the "+cmd+" the leader applied", func() bool {
				return f.Stats().AppliedIndex >= applied
			})
		}
		for _, n := range nodes {
			if kinds := entryKinds(t, n, before+1); kinds[raft.LogCommand] != 1 || len(kinds) != 1 {
				t.Errorf("after the %s, %s's log has gained %v, want one command and nothing for its announcement", cmd, n.ID(), kinds)
			}
		}
	}
}

// entryKinds counts by type the entries of n's log from index from on,
// leaving out the no-op a leader writes when its term starts: the leader
// may not have written it yet when the test reads where its log ends, and
// a new election under load writes one more; neither is an announcement.
func entryKinds(t *testing.T, n *Node, from uint64) map[raft.LogType]int {
	t.Helper()
	kinds := map[raft.LogType]int{}
	for i, last := from, n.Stats().LastIndex; i <= last; i++ {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			t.Fatalf("%s: entry %d: %v", n.ID(), i, err)
		}
		if l.Type != raft.LogNoop {
			kinds[l.Type]++
		}
	}
	return kinds
}

// slowStore delays every write to one server's raft.db while on, as a busy
// disk would.
type slowStore struct {
	on    atomic.Bool
	delay time.Duration
}

func (s *slowStore) check() error {
	if s.on.Load() {
		time.Sleep(s.delay)
	}
	return nil
}

// A follower whose disk is slow stores a command after the leader has
// committed it with the other follower: it is told of the commit as soon
// as it answers that it holds the entry, not CommitTimeout later.
func TestAFollowerThatStoresACommandLateIsToldOfItsCommitOnceItHasIt(t *testing.T) {
	const commitTimeout = time.Minute
	slow := &slowStore{delay: 300 * time.Millisecond}
	nodes := make([]*Node, 3)
	for i, id := range []string{"n1", "n2", "n3"} {
		cfg := testConfig(id, t.TempDir())
		cfg.CommitTimeout, cfg.AnnounceCommits = commitTimeout, true
		if id == "n3" {
			cfg.StoreFault = slow.check
		}
		nodes[i] = startNode(t, cfg)
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	if leader == nodes[2] {
		if err := leader.TransferLeadership(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "another leader than n3", func() bool {
			l := waitLeader(t, nodes...)
			leader = l
			return l != nodes[2]
		})
	}
	if _, err := leader.Apply(bootstrapCommand("n1", "n2", "n3")); err != nil {
		t.Fatal(err)
	}

	slow.on.Store(true)
	if _, err := leader.Apply(upsertCommand("n4", 1)); err != nil {
		t.Fatalf("the leader and its fast follower cannot commit: %v", err)
	}
	applied := leader.Stats().AppliedIndex
	if got := nodes[2].Stats().LastIndex; got >= applied {
		t.Logf("n3 already held the entry when the leader applied it (%d >= %d): the test shows less than it could", got, applied)
	}
	eventually(t, commitTimeout/6, "the slow follower n3 applies the command", func() bool {
		return nodes[2].Stats().AppliedIndex >= applied
	})
}

// The leader learns which entries a follower holds from its answers to
// raft's replication, by raft's own rule; heartbeats, refusals and answers
// from another term teach nothing.
func TestAFollowersMatchIndexFollowsItsAnswers(t *testing.T) {
	acks := newFollowerAcks()
	sent := time.Unix(1000, 0)
	entries := func(idx ...uint64) []*raft.Log {
		var out []*raft.Log
		for _, i := range idx {
			out = append(out, &raft.Log{Index: i, Term: 3})
		}
		return out
	}
	for _, step := range []struct {
		what      string
		req       raft.AppendEntriesRequest
		resp      raft.AppendEntriesResponse
		wantMatch uint64
	}{
		{"entries 5 to 7 stored", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 4, Entries: entries(5, 6, 7)}, raft.AppendEntriesResponse{Term: 3, Success: true}, 7},
		{"a heartbeat", raft.AppendEntriesRequest{Term: 3}, raft.AppendEntriesResponse{Term: 3, Success: true}, 7},
		{"a refusal", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 9}, raft.AppendEntriesResponse{Term: 3}, 7},
		{"an older request answered late", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 2, Entries: entries(3)}, raft.AppendEntriesResponse{Term: 3, Success: true}, 7},
		{"an answer from a later term", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 7, Entries: entries(8)}, raft.AppendEntriesResponse{Term: 4}, 7},
		{"an empty request after 8", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 8}, raft.AppendEntriesResponse{Term: 3, Success: true}, 8},
	} {
		sent = sent.Add(time.Millisecond)
		acks.recordAnswer("f1", &step.req, &step.resp, sent)
		if got := acks.matchIndex("f1", 3); got != step.wantMatch {
			t.Errorf("after %s: match %d, want %d", step.what, got, step.wantMatch)
		}
	}
	if got := acks.matchIndex("f1", 4); got != 0 {
		t.Errorf("match in a term nothing was answered in: %d, want 0", got)
	}
}
