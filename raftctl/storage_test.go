package raftctl

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// diskFault is a switch for one node's raft.db: while on, every write fails
// as on a disk remounted read-only.
type diskFault struct{ on atomic.Bool }

func (d *diskFault) check() error {
	if d.on.Load() {
		return fmt.Errorf("write raft.db: %w", syscall.EROFS)
	}
	return nil
}

// diskCluster starts three servers on disk, each with a diskFault, as
// voters of one cluster with its state bootstrapped.
func diskCluster(t *testing.T) ([]*Node, []*diskFault, []*Config) {
	t.Helper()
	ids := []string{"d1", "d2", "d3"}
	nodes := make([]*Node, len(ids))
	faults := make([]*diskFault, len(ids))
	cfgs := make([]*Config, len(ids))
	for i, id := range ids {
		faults[i] = &diskFault{}
		cfgs[i] = testConfig(id, t.TempDir())
		cfgs[i].StoreFault = faults[i].check
		nodes[i] = startNode(t, cfgs[i])
	}
	if err := nodes[0].Bootstrap(serversOf(nodes...)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, nodes...)
	if _, err := leader.Apply(bootstrapCommand(ids...)); err != nil {
		t.Fatal(err)
	}
	return nodes, faults, cfgs
}

func indexOf(nodes []*Node, n *Node) int {
	for i, m := range nodes {
		if m == n {
			return i
		}
	}
	return -1
}

// A follower whose disk turns read-only, then sees a new term (the write
// raft panics on: "failed to save current term"), stays up, says it cannot
// write raft.db, and comes back by itself once the disk takes writes.
func TestAReadOnlyDiskStallsAServerWithoutCrashingAndItRecovers(t *testing.T) {
	nodes, faults, _ := diskCluster(t)
	leader := waitLeader(t, nodes...)
	fs := followers(leader, nodes...)
	stuck, other := fs[0], fs[1]
	fault := faults[indexOf(nodes, stuck)]

	fault.on.Store(true)
	if _, err := leader.Apply(upsertCommand("while-read-only", 2)); err != nil {
		t.Fatalf("the two healthy servers cannot commit: %v", err)
	}
	eventually(t, 5*time.Second, "the stuck server to report its store", func() bool { return stuck.StorageError() != nil })
	msg := stuck.StorageError().Error()
	if !strings.Contains(msg, dbPath(stuck.cfg)) || !errors.Is(stuck.StorageError(), syscall.EROFS) {
		t.Fatalf("StorageError = %q, want it to name raft.db and the read-only error", msg)
	}

	// A new term: the other follower takes over, and asks the stuck server
	// for its vote, which it cannot save.
	if err := leader.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	newLeader := waitLeader(t, leader, other)
	if _, err := newLeader.Apply(upsertCommand("new-term", 3)); err != nil {
		t.Fatalf("the cluster cannot commit in the new term: %v", err)
	}
	if stuck.State() == "shutdown" || stuck.StorageError() == nil {
		t.Fatalf("the stuck server is %s with storage error %v", stuck.State(), stuck.StorageError())
	}
	if memberOf(stuck, "new-term") {
		t.Fatalf("the stuck server applied an entry it could not store")
	}

	fault.on.Store(false)
	eventually(t, 10*time.Second, "the server to recover its store", func() bool { return stuck.StorageError() == nil })
	if err := stuck.WaitApplied(ctxTimeout(t, 10*time.Second), newLeader.Stats().AppliedIndex); err != nil {
		t.Fatalf("the recovered server does not catch up: %v", err)
	}
	if !memberOf(stuck, "new-term") || !memberOf(stuck, "while-read-only") {
		t.Fatalf("the recovered server misses the entries of its stall")
	}
}

// Shutting down while a term cannot be saved neither panics nor hangs,
// and leaves a state the node restarts from: nothing was recorded beyond
// what is on disk.
func TestShutdownWhileTheDiskRefusesWritesLeavesAStateToRestartFrom(t *testing.T) {
	nodes, faults, cfgs := diskCluster(t)
	leader := waitLeader(t, nodes...)
	fs := followers(leader, nodes...)
	stuck, other := fs[0], fs[1]
	i := indexOf(nodes, stuck)

	faults[i].on.Store(true)
	if _, err := leader.Apply(upsertCommand("during-stall", 2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the stuck server to report its store", func() bool { return stuck.StorageError() != nil })
	// It is now behind, so the transfer goes to the other follower, which
	// then asks the stuck server for its vote in the new term.
	if err := leader.TransferLeadership(); err != nil {
		t.Fatal(err)
	}
	newLeader := waitLeader(t, leader, other)
	if _, err := newLeader.Apply(upsertCommand("new-term", 3)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the stuck server to try saving the new term", func() bool {
		err := stuck.StorageError()
		return err != nil && strings.Contains(err.Error(), "save CurrentTerm")
	})

	done := make(chan error, 1)
	go func() { done <- stuck.Shutdown() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown hangs while the disk refuses writes")
	}
	if !stuck.guard.abandoned() {
		t.Fatalf("the shutdown did not interrupt a stalled term save")
	}

	cfg := testConfig(cfgs[i].ServerID, cfgs[i].DataDir) // a healthy disk again
	cfg.BindAddr = stuck.Addr()                          // where its peers look for it
	again, err := New(cfg)
	if err != nil {
		t.Fatalf("restart after a shutdown during the stall: %v", err)
	}
	defer again.Shutdown()
	if err := again.WaitApplied(ctxTimeout(t, 10*time.Second), newLeader.Stats().AppliedIndex); err != nil {
		t.Fatalf("the restarted server does not catch up: %v", err)
	}
	if !memberOf(again, "during-stall") {
		t.Fatalf("the restarted server misses the entry of its stall")
	}
}
