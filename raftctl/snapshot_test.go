package raftctl

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A node whose newest snapshot on disk is corrupt (valid CRC, content that
// does not decode) starts from the older good snapshot plus the log: Restore
// failed cleanly, so raft could fall back. With no good snapshot left, New
// fails with an error instead of running on half a state.
func TestCorruptSnapshotOnDiskFallsBackOrFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig("c", dir)
	n := startNode(t, cfg)
	if err := n.Bootstrap([]Server{{ID: "c", Address: n.Addr(), Voter: true}}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	if _, err := n.Apply(bootstrapCommand("c", "d")); err != nil {
		t.Fatal(err)
	}
	if err := n.TakeSnapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(upsertCommand("after-snapshot", 2)); err != nil {
		t.Fatal(err)
	}
	want := n.Snapshot()
	term, last := n.Stats().Term, n.Stats().LastIndex
	conf := raft.Configuration{Servers: []raft.Server{{ID: "c", Address: raft.ServerAddress(n.Addr()), Suffrage: raft.Voter}}}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}

	writeCorruptSnapshot := func(index uint64) {
		t.Helper()
		store, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "raft"), cfg.SnapshotRetain, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		_, trans := raft.NewInmemTransport("")
		sink, err := store.Create(1, index, term, conf, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write([]byte{encodingJSON, '{', '"', 'c', 'l'}); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}

	writeCorruptSnapshot(last)
	again := startNode(t, cfg)
	waitLeader(t, again)
	if err := again.WaitCaughtUp(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := again.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after falling back to the good snapshot the state differs")
	}
	if err := again.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Two newer corrupt snapshots: the store keeps two, so the good one is
	// gone and nothing can be restored.
	writeCorruptSnapshot(last + 1)
	writeCorruptSnapshot(last + 2)
	broken, err := New(cfg)
	if err == nil {
		broken.Shutdown()
		t.Fatalf("New started on corrupt snapshots only")
	}
	if !strings.Contains(err.Error(), "snapshot") {
		t.Fatalf("New failed with %v, want an error about the snapshots", err)
	}
}
