package raftctl

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// BenchmarkStartupCheckOfAFullLog times what New adds before raft starts
// (walking raft.db's pages, bbolt's check, reading every entry, the newest
// snapshot, the record) on the largest log the default settings keep:
// SnapshotThreshold + TrailingLogs entries, 18,432, of 512 bytes each.
func BenchmarkStartupCheckOfAFullLog(b *testing.B) {
	dir := b.TempDir()
	raftDir := filepath.Join(dir, "raft")
	os.MkdirAll(raftDir, 0o700)
	dbPath := filepath.Join(raftDir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath})
	if err != nil {
		b.Fatal(err)
	}
	const entries = 8192 + 10240
	data := make([]byte, 512)
	for start := uint64(1); start <= entries; start += 1024 {
		var batch []*raft.Log
		for i := start; i < start+1024 && i <= entries; i++ {
			batch = append(batch, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
		}
		if err := store.StoreLogs(batch); err != nil {
			b.Fatal(err)
		}
	}
	store.SetUint64([]byte("CurrentTerm"), 1)
	store.Close()
	info, _ := os.Stat(dbPath)
	mark := &stateMark{ServerID: "b", AppliedIndex: entries, AppliedTerm: 1, CurrentTerm: 1}
	b.ResetTimer()
	for range b.N {
		fellBack, err := checkBolt(dbPath)
		if err != nil {
			b.Fatal(err)
		}
		bolt, err := openBolt(dbPath)
		if err != nil {
			b.Fatal(err)
		}
		snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
		if err != nil {
			b.Fatal(err)
		}
		if err := verifyState(dbPath, filepath.Join(raftDir, "snapshots"), filepath.Join(dir, markFileName), bolt, snaps, mark, fellBack, hclog.NewNullLogger()); err != nil {
			b.Fatal(err)
		}
		bolt.Close()
	}
	b.ReportMetric(float64(info.Size())/(1<<20), "MiB")
}
