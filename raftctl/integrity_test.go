package raftctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// memberDataDir makes the data dir of a server that was a member: a
// one-server cluster with a few applied commands, its progress recorded,
// shut down cleanly. It returns the config to start it again and the last
// index it applied. With compact set, the log is also snapshotted and
// compacted, so that the snapshot is the only record of its first entries.
func memberDataDir(t *testing.T, compact bool) (*Config, uint64) {
	t.Helper()
	dir := t.TempDir()
	cfg := testConfig("m", dir)
	if compact {
		cfg.TrailingLogs = 1
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Bootstrap(serversOf(n)); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, n)
	if _, err := n.Apply(bootstrapCommand("m")); err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i < 6; i++ {
		if _, err := n.Apply(upsertCommand(fmt.Sprintf("u%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	if compact {
		if err := n.TakeSnapshot(); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Apply(upsertCommand("after-snapshot", 7)); err != nil {
			t.Fatal(err)
		}
		if first, _ := n.logs.FirstIndex(); first <= 1 {
			t.Fatalf("the log was not compacted (first index %d)", first)
		}
	}
	applied := n.Stats().AppliedIndex
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	mark, err := readMark(filepath.Join(dir, markFileName))
	if err != nil || mark == nil || mark.AppliedIndex != applied || mark.ServerID != "m" {
		t.Fatalf("progress recorded as %+v (%v), want applied index %d of server m", mark, err, applied)
	}
	return testConfig("m", dir), applied
}

func dbPath(cfg *Config) string { return filepath.Join(cfg.DataDir, "raft", "raft.db") }

// refusesToStart asserts that New refuses cfg's state with one line that
// names the file and the way out, without panicking and without creating
// or changing anything raft would start from.
func refusesToStart(t *testing.T, cfg *Config, file string, says ...string) {
	t.Helper()
	before := listing(t, cfg.DataDir)
	n, err := New(cfg)
	if err == nil {
		n.Shutdown()
		t.Fatalf("New started on the broken state")
	}
	msg := err.Error()
	if !errors.Is(err, ErrUnsafeState) {
		t.Fatalf("New: %v, want ErrUnsafeState", err)
	}
	if strings.Contains(msg, "\n") {
		t.Fatalf("the error is not one line: %q", msg)
	}
	for _, want := range append([]string{file, "docs/operations.md"}, says...) {
		if !strings.Contains(msg, want) {
			t.Fatalf("the error does not say %q: %v", want, err)
		}
	}
	if after := listing(t, cfg.DataDir); after != before {
		t.Fatalf("a refused start changed the data dir:\nbefore: %s\nafter:  %s", before, after)
	}
}

// listing names every file under dir with its size.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil {
			fmt.Fprintf(&b, "%s:%d ", strings.TrimPrefix(path, dir), info.Size())
		}
		return nil
	})
	return b.String()
}

func TestStartRefusesMissingEmptyOrRolledBackRaftState(t *testing.T) {
	t.Run("raft.db deleted", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		os.Remove(dbPath(cfg))
		refusesToStart(t, cfg, dbPath(cfg), "missing", "applied raft index")
	})
	t.Run("the whole raft directory deleted", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		os.RemoveAll(filepath.Join(cfg.DataDir, "raft"))
		refusesToStart(t, cfg, dbPath(cfg), "missing")
	})
	t.Run("raft.db emptied", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		if err := os.Truncate(dbPath(cfg), 0); err != nil {
			t.Fatal(err)
		}
		refusesToStart(t, cfg, dbPath(cfg), "empty")
	})
	t.Run("raft.db replaced by a fresh one", func(t *testing.T) {
		cfg, applied := memberDataDir(t, false)
		fresh := testConfig("m", t.TempDir())
		n, err := New(fresh)
		if err != nil {
			t.Fatal(err)
		}
		n.Shutdown()
		if err := os.Rename(dbPath(fresh), dbPath(cfg)); err != nil {
			t.Fatal(err)
		}
		refusesToStart(t, cfg, dbPath(cfg), "rolled back", fmt.Sprintf("had applied index %d", applied))
	})
	t.Run("the newest bbolt meta page damaged", func(t *testing.T) {
		cfg, applied := memberDataDir(t, false)
		zeroNewestMetaPage(t, dbPath(cfg))
		refusesToStart(t, cfg, dbPath(cfg), "rolled back", fmt.Sprintf("had applied index %d", applied), "meta page is damaged")
	})
	// What raft.db shows when it lost its last term or vote: the record
	// beside it is ahead.
	t.Run("a lost term", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		path := filepath.Join(cfg.DataDir, markFileName)
		mark, _ := readMark(path)
		mark.CurrentTerm += 5
		if err := writeMark(path, *mark); err != nil {
			t.Fatal(err)
		}
		refusesToStart(t, cfg, dbPath(cfg), "current term", "vote")
	})
	t.Run("a lost vote record", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		path := filepath.Join(cfg.DataDir, markFileName)
		mark, _ := readMark(path)
		if mark.VoteTerm == 0 {
			t.Fatalf("the record has no vote: %+v", mark)
		}
		mark.VoteTerm += 5
		if err := writeMark(path, *mark); err != nil {
			t.Fatal(err)
		}
		refusesToStart(t, cfg, dbPath(cfg), "last vote", "lost the record of a vote")
	})
}

func TestStartRefusesDamagedRaftStateWithoutPanicking(t *testing.T) {
	t.Run("raft.db truncated", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		info, _ := os.Stat(dbPath(cfg))
		if err := os.Truncate(dbPath(cfg), info.Size()/2); err != nil {
			t.Fatal(err)
		}
		refusesToStart(t, cfg, dbPath(cfg))
	})
	t.Run("a data page zeroed", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		zeroLastLeafPage(t, dbPath(cfg))
		refusesToStart(t, cfg, dbPath(cfg), "damaged")
	})
	t.Run("garbage over the data pages", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		f, err := os.OpenFile(dbPath(cfg), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := f.Stat()
		page := int64(os.Getpagesize())
		garbage := []byte(strings.Repeat("garbage!", int(page)/8))
		for off := 2 * page; off < info.Size(); off += page {
			f.WriteAt(garbage, off)
		}
		f.Close()
		refusesToStart(t, cfg, dbPath(cfg), "damaged")
	})
	t.Run("compacted log with its snapshot deleted", func(t *testing.T) {
		cfg, _ := memberDataDir(t, true)
		snapDir := filepath.Join(cfg.DataDir, "raft", "snapshots")
		entries, _ := os.ReadDir(snapDir)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(snapDir, e.Name()))
		}
		refusesToStart(t, cfg, snapDir, "no snapshot covers")
	})
	t.Run("compacted log with its snapshot damaged", func(t *testing.T) {
		cfg, _ := memberDataDir(t, true)
		states, _ := filepath.Glob(filepath.Join(cfg.DataDir, "raft", "snapshots", "*", "state.bin"))
		if len(states) == 0 {
			t.Fatal("no snapshot to damage")
		}
		for _, s := range states {
			if err := os.WriteFile(s, []byte("garbage"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		refusesToStart(t, cfg, filepath.Join(cfg.DataDir, "raft", "snapshots"), "no snapshot covers")
	})
}

func TestStartRefusesAStateRecordThatIsGarbageOrAnotherServers(t *testing.T) {
	t.Run("garbage record", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		path := filepath.Join(cfg.DataDir, markFileName)
		os.WriteFile(path, []byte("garbage"), 0o600)
		refusesToStart(t, cfg, path, "not a record")
	})
	t.Run("the raft ID changed", func(t *testing.T) {
		cfg, _ := memberDataDir(t, false)
		cfg.ServerID = "m-renamed"
		refusesToStart(t, cfg, filepath.Join(cfg.DataDir, markFileName), `belongs to raft server "m"`, `starts as "m-renamed"`)
	})
}

// The checks must not cry wolf: a member restarts on its intact state,
// with everything it had, again and again, compacted or not.
func TestIntactStateRestartsWithEverything(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compacted %v", compact), func(t *testing.T) {
			cfg, applied := memberDataDir(t, compact)
			for round := 0; round < 2; round++ {
				n, err := New(cfg)
				if err != nil {
					t.Fatalf("round %d: New on intact state: %v", round, err)
				}
				waitLeader(t, n)
				if err := n.WaitApplied(ctxTimeout(t, 5*time.Second), applied); err != nil {
					t.Fatal(err)
				}
				if !memberOf(n, "u5") {
					t.Fatalf("round %d: the state lost a member", round)
				}
				if err := n.Shutdown(); err != nil {
					t.Fatal(err)
				}
				cfg = testConfig("m", cfg.DataDir)
				if compact {
					cfg.TrailingLogs = 1
				}
			}
		})
	}
}

// bbolt's meta pages (see validMeta): the transaction ID is at byte 16+48
// of page 0 and page 1.
func zeroNewestMetaPage(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := os.Getpagesize()
	var txid [2]uint64
	for i := range txid {
		buf := make([]byte, page)
		if _, err := f.ReadAt(buf, int64(i*page)); err != nil {
			t.Fatal(err)
		}
		if !validMeta(buf[16:]) {
			t.Fatalf("meta page %d is already invalid", i)
		}
		txid[i] = binary.NativeEndian.Uint64(buf[16+48:])
	}
	newest := 0
	if txid[1] > txid[0] {
		newest = 1
	}
	if _, err := f.WriteAt(make([]byte, page), int64(newest*page)); err != nil {
		t.Fatal(err)
	}
}

// zeroLastLeafPage zeroes the last bbolt leaf page of the file (page
// header: id uint64, flags uint16; leaf pages have flag 0x02), where the
// newest log entries are.
func zeroLastLeafPage(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	last := -1
	for i := 2; (i+1)*page <= len(data); i++ {
		p := data[i*page:]
		if binary.NativeEndian.Uint64(p) == uint64(i) && binary.NativeEndian.Uint16(p[8:])&0x02 != 0 {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("no leaf page found")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, page), int64(last*page)); err != nil {
		t.Fatal(err)
	}
}

// Whatever bytes a damaged raft.db holds, New answers with an error or
// starts: it never panics or faults (a panic in bbolt's own goroutines, or
// a read past its memory map, would kill the process). Random damage,
// from a seeded source so that a failure can be replayed.
func TestRandomDamageToRaftDBNeverCrashes(t *testing.T) {
	cfg, _ := memberDataDir(t, true)
	pristine, err := os.ReadFile(dbPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(18, 2))
	refused := 0
	const rounds = 100
	for round := range rounds {
		damaged := append([]byte(nil), pristine...)
		switch round % 4 {
		case 0: // a run of random bytes
			at, n := rng.IntN(len(damaged)), 1+rng.IntN(64)
			for i := at; i < min(at+n, len(damaged)); i++ {
				damaged[i] = byte(rng.IntN(256))
			}
		case 1: // one bit
			at := rng.IntN(len(damaged))
			damaged[at] ^= 1 << rng.IntN(8)
		case 2: // a whole page zeroed
			page := os.Getpagesize()
			at := rng.IntN(len(damaged)/page) * page
			clear(damaged[at : at+page])
		case 3: // cut short
			damaged = damaged[:rng.IntN(len(damaged))]
		}
		if err := os.WriteFile(dbPath(cfg), damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := New(cfg)
		if err != nil {
			if !strings.Contains(err.Error(), dbPath(cfg)) && !strings.Contains(err.Error(), filepath.Join(cfg.DataDir, "raft")) {
				t.Fatalf("round %d: the error does not name the file: %v", round, err)
			}
			refused++
			continue
		}
		if err := n.Shutdown(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	t.Logf("%d of %d damaged files refused, the rest held nothing that mattered", refused, rounds)
}
