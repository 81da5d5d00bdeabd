package raftctl

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// What raft-boltdb and bbolt guarantee, and what they do not:
//
//   - bbolt commits a transaction by writing its pages, fsync, then one of
//     two meta pages (alternately), fsync. On open it takes the meta page
//     with the higher transaction ID that passes its checksum, and falls
//     back to the other one *silently* when it does not: a damaged newest
//     meta page rolls the file back by one transaction, which for raft is
//     the last entries written (an agent went from applied 56 to 55). A
//     meta page torn by a power cut is that same fallback, and harmless
//     there, since the transaction never returned; a meta page damaged
//     later loses an entry raft had acknowledged.
//   - Data pages carry no checksum. A damaged page is found only when read:
//     bbolt panics ("assertion failed: Page expected to be ..."), at open
//     (the freelist is rebuilt by walking every page, with NoFreelistSync)
//     or later inside raft's goroutines.
//   - raft-boltdb stores each log entry msgpack-encoded; one that no longer
//     decodes is an error from GetLog, which raft turns into a panic when
//     it needs the entry (in NewRaft, or applying).
//   - raft panics when it cannot save its current term ("failed to save
//     current term"), and when an entry after the snapshot it restored is
//     missing ("log not found"): a compacted log whose snapshot is gone.
//   - raft treats a missing or empty raft.db as a brand-new server, which
//     then votes with no memory of its votes, or bootstraps a new cluster.
//
// So before raft sees the stores, verifyState checks them: bbolt's own
// consistency check, every log entry decoded, the newest snapshot read
// whole, the log contiguous from that snapshot, and the state not behind
// what this server had applied, as recorded in a small file beside raft's
// state (stateMark, written by markLoop and at Shutdown). Anything wrong is
// one error naming the file and the way out, and raft never starts on it.
// Write failures while running are storeGuard's (storage.go).

// ErrUnsafeState is wrapped by every refusal to start on raft state that is
// missing, damaged or behind what this server had applied.
var ErrUnsafeState = errors.New("raftctl: raft state cannot be trusted")

// recovery is the way out named by every ErrUnsafeState error.
const recovery = `refusing to start rather than lose or fork the cluster's state; to bring this node back, move the data dir aside and start with an empty one (it rejoins as a new raft server), see "Lost or damaged raft state" in docs/operations.md`

// markFileName is the stateMark's file, in Config.DataDir: beside raft/,
// not in it, so that losing raft/ does not lose the record of it.
const markFileName = "raft-applied.json"

// markInterval is how often markLoop records progress (when there is any).
const markInterval = 200 * time.Millisecond

// stateMark records how far this server's raft state had come. Every field
// only ever grows, and each was durable in raft.db or a snapshot when it was
// recorded, so raft state found behind it on start has lost something.
type stateMark struct {
	// ServerID is the raft server the state belongs to.
	ServerID string `json:"server_id"`
	// AppliedIndex is the last entry the state machine had applied, and
	// AppliedTerm its term (0 when it came from a snapshot).
	AppliedIndex uint64 `json:"applied_index"`
	AppliedTerm  uint64 `json:"applied_term,omitempty"`
	// CurrentTerm is raft's term, and VoteTerm the last term it voted in,
	// as saved in raft.db: a stable store behind either has lost the
	// record of a vote, and could vote twice in a term.
	CurrentTerm uint64 `json:"current_term"`
	VoteTerm    uint64 `json:"vote_term,omitempty"`
}

func unsafeState(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s; %s", ErrUnsafeState, path, fmt.Sprintf(format, args...), recovery)
}

// readMark reads the stateMark at path; nil when there is none.
func readMark(path string) (*stateMark, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raftctl: read %s: %w", path, err)
	}
	var m stateMark
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || m.ServerID == "" {
		return nil, unsafeState(path, "not a record of raft progress (%q...)", truncate(data, 40))
	}
	return &m, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// writeMark replaces the file at path with m, atomically and durably.
func writeMark(path string, m stateMark) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return WriteFileDurably(path, append(data, '\n'))
}

// WriteFileDurably writes data through a synced temporary file, a rename
// and a sync of the directory, so that a crash leaves the old file or the
// new one, and the new one survives. The agent keeps its own small state
// files (node ID, raft ID, incarnation, secrets) the same way.
func WriteFileDurably(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkBeforeOpen refuses what must not even be opened: raft.db missing or
// empty while the mark says this server had state (raft-boltdb would
// create a fresh one, and raft start as a brand-new server), and a mark of
// another server (the raft ID changed).
func checkBeforeOpen(cfg *Config, dbPath, markPath string, mark *stateMark) error {
	if mark == nil {
		return nil
	}
	if mark.ServerID != cfg.ServerID {
		return fmt.Errorf("%w: %s: this data dir's raft state belongs to raft server %q, but this agent starts as %q (was its raft-id file changed or replaced?); put %q back as its raft ID, or, to rejoin as a new server, move the data dir aside and start with an empty one (docs/operations.md, \"Lost or damaged raft state\")",
			ErrUnsafeState, markPath, mark.ServerID, cfg.ServerID, mark.ServerID)
	}
	info, err := os.Stat(dbPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return unsafeState(dbPath, "missing, but this server had applied raft index %d (recorded in %s)", mark.AppliedIndex, markPath)
	case err != nil:
		return fmt.Errorf("raftctl: %s: %w", dbPath, err)
	case info.Size() == 0:
		return unsafeState(dbPath, "empty, but this server had applied raft index %d (recorded in %s)", mark.AppliedIndex, markPath)
	}
	return nil
}

// boltMetas is what the two meta pages of a bbolt file say.
type boltMetas struct {
	valid [2]bool
	// pages is the page count (the high-water mark) of the meta page bbolt
	// uses, pageSize its page size, root its root bucket's page.
	pages, pageSize, root uint64
}

// fellBack reports whether bbolt is using the older meta page because the
// newer one is damaged.
func (m boltMetas) fellBack() bool { return m.valid[0] != m.valid[1] }

// readBoltMetas reads the meta pages as bbolt lays them out: page 0 and
// page 1, each a 16-byte page header and the meta (see validMeta).
func readBoltMetas(path string) (boltMetas, error) {
	var m boltMetas
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	page := uint64(os.Getpagesize()) // what bbolt creates files with
	head := make([]byte, 16+boltChecksumOffset+8)
	if _, err := f.ReadAt(head, 0); err == nil && validMeta(head[16:]) {
		page = uint64(binary.NativeEndian.Uint32(head[16+8:]))
	}
	var txid uint64
	for i := range 2 {
		if _, err := f.ReadAt(head, int64(uint64(i)*page)); err != nil {
			continue
		}
		meta := head[16:]
		if m.valid[i] = validMeta(meta); !m.valid[i] {
			continue
		}
		if t := binary.NativeEndian.Uint64(meta[48:]); t >= txid {
			txid = t
			m.pages = binary.NativeEndian.Uint64(meta[40:])
			m.pageSize = uint64(binary.NativeEndian.Uint32(meta[8:]))
			m.root = binary.NativeEndian.Uint64(meta[16:])
		}
	}
	return m, nil
}

// checkBolt runs bbolt's consistency check over the file, opened read-only,
// after walkBolt found every reachable page sound (so that bbolt cannot
// crash on one), turning a panic into an error. A damaged meta page is
// not an error by itself (bbolt falls back to the other one, as after a
// power cut during a commit; verifyState decides whether that lost
// anything), but bbolt's check cannot run past one: the pages are then
// walked when openBolt rebuilds the freelist (NoFreelistSync), and every
// log entry is read by verifyState. It reports whether bbolt fell back.
func checkBolt(path string) (fellBack bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = unsafeState(path, "damaged (%v)", r)
		}
	}()
	if info, err := os.Stat(path); errors.Is(err, os.ErrNotExist) || (err == nil && info.Size() == 0) {
		return false, nil // a new server: raft-boltdb creates it
	}
	metas, err := readBoltMetas(path)
	if err != nil {
		return false, fmt.Errorf("raftctl: read %s: %w", path, err)
	}
	if !metas.valid[0] && !metas.valid[1] {
		return false, unsafeState(path, "damaged: both bbolt meta pages are invalid (not a bbolt file, or overwritten)")
	}
	// bbolt maps the file and would die of SIGBUS, not panic, reading a
	// page past its end: a truncated file is refused before it is opened.
	if info, err := os.Stat(path); err != nil {
		return false, fmt.Errorf("raftctl: %s: %w", path, err)
	} else if want := metas.pages * metas.pageSize; uint64(info.Size()) < want {
		return false, unsafeState(path, "truncated: %d bytes, but its %d pages of %d bytes need %d", info.Size(), metas.pages, metas.pageSize, want)
	}
	if err := walkBolt(path, metas); err != nil {
		return false, unsafeState(path, "damaged: %v", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return false, fmt.Errorf("raftctl: %s is locked by another process: is another agent running on this data dir?", path)
	}
	if err != nil {
		return false, unsafeState(path, "cannot be opened (%v)", err)
	}
	defer db.Close()
	if metas.fellBack() {
		return true, nil
	}
	var first error
	problems := 0
	db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() { // drained whole: the check's goroutine sends until done
			if first == nil {
				first = e
			}
			problems++
		}
		return nil
	})
	if first != nil {
		return false, unsafeState(path, "damaged: %d problems found by bbolt's consistency check, the first: %v", problems, first)
	}
	return metas.fellBack(), nil
}

// bbolt's meta page (internal/common/meta.go in bbolt v1.5.0), after the
// 16-byte page header, in the machine's byte order: magic, version, page
// size and flags (4 bytes each), the root bucket (16), the freelist page,
// the page count and the transaction ID (8 each), then an FNV-64a checksum
// of everything before it.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltChecksumOffset = 56
)

func validMeta(meta []byte) bool {
	if len(meta) < boltChecksumOffset+8 {
		return false
	}
	order := binary.NativeEndian
	if order.Uint32(meta) != boltMagic || order.Uint32(meta[4:]) != boltVersion {
		return false
	}
	h := fnv.New64a()
	h.Write(meta[:boltChecksumOffset])
	return h.Sum64() == order.Uint64(meta[boltChecksumOffset:])
}

// stateFacts is what verifyState found in raft's stores.
type stateFacts struct {
	firstIndex, lastIndex uint64
	snapshotIndex         uint64 // the newest snapshot that reads whole, 0: none
	currentTerm, voteTerm uint64
	termAt                func(index uint64) (uint64, bool)
}

// verifyState checks raft's stores before raft opens them: every log entry
// decodes, the newest snapshot reads whole, the log continues from it, and
// nothing is behind mark. A store that panics is an error here.
func verifyState(dbPath, snapDir, markPath string, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, mark *stateMark, fellBack bool, logger hclog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = unsafeState(dbPath, "damaged (%v)", r)
		}
	}()
	facts, err := readFacts(dbPath, snapDir, store, snaps, logger)
	if err != nil {
		return err
	}
	if mark == nil {
		if fellBack {
			logger.Warn("raft.db's newest bbolt meta page is damaged; bbolt uses the previous transaction (as after a power cut during a commit)", "file", dbPath)
		}
		return nil
	}
	reached := max(facts.lastIndex, facts.snapshotIndex)
	if reached < mark.AppliedIndex {
		why := ""
		if fellBack {
			why = " (the newest bbolt meta page is damaged, so bbolt fell back to the previous transaction)"
		}
		return unsafeState(dbPath, "rolled back: raft's log and snapshots end at index %d, but this server had applied index %d (recorded in %s)%s", reached, mark.AppliedIndex, markPath, why)
	}
	if mark.AppliedTerm > 0 {
		if term, ok := facts.termAt(mark.AppliedIndex); ok && term != mark.AppliedTerm {
			return unsafeState(dbPath, "replaced: entry %d has term %d, but this server applied it at term %d (recorded in %s)", mark.AppliedIndex, term, mark.AppliedTerm, markPath)
		}
	}
	if facts.currentTerm < mark.CurrentTerm {
		return unsafeState(dbPath, "rolled back: raft's current term is %d, but this server had reached term %d (recorded in %s): it may have lost the record of a vote", facts.currentTerm, mark.CurrentTerm, markPath)
	}
	if facts.voteTerm < mark.VoteTerm {
		return unsafeState(dbPath, "rolled back: raft's last vote is of term %d, but this server had voted in term %d (recorded in %s): it lost the record of a vote", facts.voteTerm, mark.VoteTerm, markPath)
	}
	if fellBack {
		logger.Warn("raft.db's newest bbolt meta page is damaged; bbolt uses the previous transaction, which holds everything this server had applied (as after a power cut during a commit)", "file", dbPath)
	}
	return nil
}

func readFacts(dbPath, snapDir string, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, logger hclog.Logger) (stateFacts, error) {
	var f stateFacts
	var err error
	if f.firstIndex, err = store.FirstIndex(); err != nil {
		return f, unsafeState(dbPath, "cannot read the first log index (%v)", err)
	}
	if f.lastIndex, err = store.LastIndex(); err != nil {
		return f, unsafeState(dbPath, "cannot read the last log index (%v)", err)
	}
	terms := map[uint64]uint64{}
	for i := f.firstIndex; i != 0 && i <= f.lastIndex; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			return f, unsafeState(dbPath, "log entry %d of %d..%d cannot be read (%v)", i, f.firstIndex, f.lastIndex, err)
		}
		if l.Index != i {
			return f, unsafeState(dbPath, "log entry %d says it is entry %d", i, l.Index)
		}
		terms[i] = l.Term
	}
	f.termAt = func(index uint64) (uint64, bool) { t, ok := terms[index]; return t, ok }
	if f.currentTerm, f.voteTerm, err = savedTerms(store); err != nil {
		return f, unsafeState(dbPath, "cannot read raft's current term and vote (%v)", err)
	}

	metas, err := snaps.List()
	if err != nil {
		return f, unsafeState(snapDir, "cannot list the snapshots (%v)", err)
	}
	for _, meta := range metas {
		if err := readSnapshotWhole(snaps, meta.ID); err != nil {
			logger.Warn("a snapshot is damaged; raft will fall back to an older one", "snapshot", filepath.Join(snapDir, meta.ID), "error", err)
			continue
		}
		f.snapshotIndex = meta.Index
		break
	}
	if f.lastIndex > 0 && f.firstIndex > f.snapshotIndex+1 {
		if f.snapshotIndex == 0 {
			return f, unsafeState(snapDir, "raft's log starts at index %d, and no snapshot covers the entries before it (snapshots deleted or damaged)", f.firstIndex)
		}
		return f, unsafeState(snapDir, "raft's log starts at index %d, and the newest readable snapshot ends at %d: entries %d..%d are lost", f.firstIndex, f.snapshotIndex, f.snapshotIndex+1, f.firstIndex-1)
	}
	return f, nil
}

// savedTerms reads raft's current term and the term of its last vote from
// its stable store (raft.go's keyCurrentTerm and keyLastVoteTerm); 0 for
// what was never saved.
func savedTerms(stable raft.StableStore) (current, vote uint64, err error) {
	current, err = stable.GetUint64([]byte("CurrentTerm"))
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, 0, err
	}
	vote, err = stable.GetUint64([]byte("LastVoteTerm"))
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, 0, err
	}
	return current, vote, nil
}

// readSnapshotWhole opens a snapshot (raft's store checks its CRC) and
// decodes it as the FSM would.
func readSnapshotWhole(snaps raft.SnapshotStore, id string) error {
	_, rc, err := snaps.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, _, err = decodeSnapshot(rc)
	return err
}
