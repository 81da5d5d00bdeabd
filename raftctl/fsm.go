package raftctl

import (
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

// applyResponse is what the FSM returns for one command entry; raft hands it
// back to the Apply call on the leader that proposed the entry.
type applyResponse struct {
	result failover.Result
	err    error
}

// fsm is the raft state machine over a failover.Cluster.
//
// Raft calls ApplyBatch, Snapshot and Restore from its single FSM goroutine;
// readers (Node.Read, Node.Snapshot) call in from anywhere, hence the lock.
type fsm struct {
	mu      sync.RWMutex
	cluster *failover.Cluster

	// applied is the index of the last entry the FSM has processed
	// (commands and configuration changes; raft never shows it no-op or
	// barrier entries).
	applied atomic.Uint64

	// progressMu guards progress, a channel closed (and replaced) whenever
	// applied moves, so that waiters sleep instead of spinning.
	progressMu sync.Mutex
	progress   chan struct{}
	// appliedPair is applied with the term of that entry (0 after a
	// snapshot restore, until the next entry), under progressMu.
	appliedPair [2]uint64

	changes *notifier

	// stateIndex is the raft index of the last entry that changed the
	// state (or of the restored snapshot), under mu: the version a
	// blocking query compares with the index its client last saw.
	stateIndex uint64
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM() *fsm {
	return &fsm{
		cluster:  failover.NewCluster(),
		progress: make(chan struct{}),
		changes:  newNotifier(),
	}
}

// Apply applies one log entry. Raft uses ApplyBatch instead because fsm is a
// BatchingFSM; Apply is kept for the FSM interface and for tests.
func (f *fsm) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in order under one lock acquisition.
// A command that does not decode, or that Cluster.Apply refuses, leaves the
// state unchanged and returns its error as the entry's response: every
// replica meets the same bytes and refuses them the same way, so they stay
// identical, and no entry can crash a node.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	responses := make([]interface{}, len(logs))
	changed := false
	var last, lastTerm uint64

	f.mu.Lock()
	for i, l := range logs {
		last, lastTerm = l.Index, l.Term
		if l.Type != raft.LogCommand {
			continue // configuration changes are raft's business
		}
		cmd, err := DecodeCommand(l.Data)
		if err != nil {
			responses[i] = &applyResponse{err: err}
			continue
		}
		res, err := f.cluster.Apply(cmd)
		responses[i] = &applyResponse{result: res, err: err}
		if err == nil && changesState(cmd, res) {
			changed = true
			f.stateIndex = l.Index
		}
	}
	f.mu.Unlock()

	if len(logs) > 0 {
		f.setApplied(last, lastTerm)
	}
	if changed {
		f.changes.notify()
	}
	return responses
}

// changesState reports whether a successfully applied command may have
// changed the cluster. Only a batch of actions that were all stale is known
// not to have; everything else is reported (a rare spurious notification
// costs a consumer one needless look at the state).
func changesState(cmd failover.Command, res failover.Result) bool {
	if cmd.Kind == failover.CmdApplyActions || cmd.Kind == failover.CmdCopiesLost {
		return res.Applied > 0
	}
	return true
}

// Snapshot captures the state for raft. The clone is taken under the read
// lock; encoding and writing happen in Persist, without it, while raft goes
// on applying entries.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	c := f.cluster.Clone()
	applied := f.applied.Load()
	f.mu.RUnlock()
	return &fsmSnapshot{cluster: c, applied: applied}, nil
}

// Restore replaces the state with a snapshot's, all or nothing: the snapshot
// is read and decoded fully and the cluster validated before anything is
// swapped, so a corrupt or truncated snapshot returns an error and leaves the
// previous state in place.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	c, applied, err := decodeSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.cluster = c
	f.stateIndex = applied
	f.mu.Unlock()
	f.setApplied(applied, 0)
	f.changes.notify()
	return nil
}

// appliedIndex returns the index of the last entry the FSM processed.
func (f *fsm) appliedIndex() uint64 { return f.applied.Load() }

// appliedAt returns the index of the last entry the FSM processed and its
// term (0 when unknown).
func (f *fsm) appliedAt() (uint64, uint64) {
	f.progressMu.Lock()
	defer f.progressMu.Unlock()
	return f.appliedPair[0], f.appliedPair[1]
}

// setApplied records progress and wakes waiters.
func (f *fsm) setApplied(index, term uint64) {
	f.applied.Store(index)
	f.progressMu.Lock()
	f.appliedPair = [2]uint64{index, term}
	close(f.progress)
	f.progress = make(chan struct{})
	f.progressMu.Unlock()
}

// progressed returns a channel closed at the next call of setApplied.
func (f *fsm) progressed() <-chan struct{} {
	f.progressMu.Lock()
	defer f.progressMu.Unlock()
	return f.progress
}

// fsmSnapshot is a point-in-time copy of the cluster.
type fsmSnapshot struct {
	cluster *failover.Cluster
	applied uint64
}

// Persist writes the snapshot to sink, cancelling it on any error so raft
// discards the partial file.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := encodeSnapshot(sink, s.cluster, s.applied); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release has nothing to free: the clone is garbage collected.
func (s *fsmSnapshot) Release() {}

// notifier fans a "something changed" signal out to subscribers. Each
// subscriber has a channel with a buffer of one: signals coalesce, a slow
// subscriber never blocks the FSM, and it always sees at least one signal
// after the last change.
type notifier struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

func newNotifier() *notifier {
	return &notifier{subs: map[chan struct{}]struct{}{}}
}

func (n *notifier) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs, ch)
			n.mu.Unlock()
		})
	}
}

func (n *notifier) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.subs)
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending; this one coalesces into it
		}
	}
}
