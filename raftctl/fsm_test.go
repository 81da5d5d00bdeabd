package raftctl

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/steward-dev/steward/failover"
)

func commandLog(t testing.TB, index uint64, cmd failover.Command) *raft.Log {
	t.Helper()
	data, err := EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func drained(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestFSMAppliesABatchAndRefusesBadEntriesWithoutChangingState(t *testing.T) {
	f := newFSM()
	changes, cancel := f.changes.subscribe()
	defer cancel()

	batch := []*raft.Log{
		commandLog(t, 1, bootstrapCommand("a", "b", "c")),
		{Index: 2, Term: 1, Type: raft.LogConfiguration, Data: []byte("raft's business")},
		{Index: 3, Term: 1, Type: raft.LogCommand, Data: []byte{9, 9, 9}},                // unknown encoding
		{Index: 4, Term: 1, Type: raft.LogCommand, Data: []byte{encodingJSON, '{', 'x'}}, // garbage
		commandLog(t, 5, bootstrapCommand("x")),                                          // refused by Cluster.Apply
		commandLog(t, 6, upsertCommand("d", 6)),
	}
	responses := f.ApplyBatch(batch)
	if len(responses) != len(batch) {
		t.Fatalf("%d responses for %d entries", len(responses), len(batch))
	}
	if responses[1] != nil {
		t.Errorf("configuration entry got response %v, want nil", responses[1])
	}
	wantErr := map[int]error{2: ErrUnknownEncoding, 4: failover.ErrAlreadyBootstrapped}
	for i, r := range responses {
		if i == 1 {
			continue
		}
		resp, ok := r.(*applyResponse)
		if !ok {
			t.Fatalf("entry %d: response %T, want *applyResponse", i, r)
		}
		switch {
		case i == 3:
			if resp.err == nil {
				t.Errorf("garbage entry applied without error")
			}
		case wantErr[i] != nil:
			if !errors.Is(resp.err, wantErr[i]) {
				t.Errorf("entry %d: error %v, want %v", i, resp.err, wantErr[i])
			}
		default:
			if resp.err != nil {
				t.Errorf("entry %d: unexpected error %v", i, resp.err)
			}
		}
	}

	c := f.cluster
	if !c.Bootstrapped || len(c.Partitions) != 16 {
		t.Fatalf("state after batch: bootstrapped=%v partitions=%d", c.Bootstrapped, len(c.Partitions))
	}
	if _, ok := c.Members["x"]; ok {
		t.Fatalf("the refused second bootstrap added member x")
	}
	if _, ok := c.Members["d"]; !ok {
		t.Fatalf("the upsert after the refused entries was not applied")
	}
	if got := f.appliedIndex(); got != 6 {
		t.Fatalf("applied index %d, want 6", got)
	}
	if !drained(changes) {
		t.Fatalf("no change signal after a batch that changed state")
	}
}

func TestFSMSignalsOnlyChanges(t *testing.T) {
	f := newFSM()
	f.ApplyBatch([]*raft.Log{commandLog(t, 1, bootstrapCommand("a", "b"))})
	changes, cancel := f.changes.subscribe()
	defer cancel()

	// An action planned against an epoch that has moved on is stale: the
	// entry applies, nothing changes, nobody is woken.
	stale := failover.Command{Kind: failover.CmdApplyActions, At: 2, Actions: []failover.Action{
		{Kind: failover.ActionPromote, Partition: 0, Epoch: 99, Node: "b"},
	}}
	f.Apply(commandLog(t, 2, stale))
	if drained(changes) {
		t.Fatalf("change signal after an all-stale command")
	}
	f.Apply(commandLog(t, 3, failover.Command{Kind: failover.CmdRemoveMember, Node: "nobody"}))
	if drained(changes) {
		t.Fatalf("change signal after a refused command")
	}
	f.Apply(commandLog(t, 4, upsertCommand("c", 4)))
	f.Apply(commandLog(t, 5, upsertCommand("d", 5)))
	if !drained(changes) {
		t.Fatalf("no change signal after upserts")
	}
	if drained(changes) {
		t.Fatalf("two changes gave two signals; they should coalesce into one")
	}
}

// The state index moves only with entries that changed the state, so a
// blocking query woken by nothing it can see does not answer early.
func TestStateIndexIsTheLastEntryThatChangedTheState(t *testing.T) {
	f := newFSM()
	f.ApplyBatch([]*raft.Log{
		commandLog(t, 1, bootstrapCommand("a", "b")),
		{Index: 2, Term: 1, Type: raft.LogConfiguration, Data: []byte("raft's business")},
	})
	if f.stateIndex != 1 {
		t.Fatalf("state index %d after the bootstrap and a configuration entry, want 1", f.stateIndex)
	}
	f.Apply(commandLog(t, 3, failover.Command{Kind: failover.CmdRemoveMember, Node: "nobody"}))
	if f.stateIndex != 1 {
		t.Fatalf("state index %d after a refused command, want 1", f.stateIndex)
	}
	f.ApplyBatch([]*raft.Log{commandLog(t, 4, upsertCommand("c", 4)), commandLog(t, 5, upsertCommand("d", 5))})
	if f.stateIndex != 5 {
		t.Fatalf("state index %d after upserts at 4 and 5, want 5", f.stateIndex)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	restored := newFSM()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if restored.stateIndex != 5 {
		t.Fatalf("state index %d after restoring a snapshot taken at 5, want 5", restored.stateIndex)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := newFSM()
	src.ApplyBatch([]*raft.Log{
		commandLog(t, 1, bootstrapCommand("a", "b", "c")),
		commandLog(t, 2, upsertCommand("d", 2)),
	})
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memorySink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Fatalf("Persist did not close the sink")
	}

	dst := newFSM()
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !reflect.DeepEqual(dst.cluster, src.cluster) {
		t.Fatalf("restored state differs from the snapshot's")
	}
	if dst.appliedIndex() != 2 {
		t.Fatalf("restored applied index %d, want 2", dst.appliedIndex())
	}
}

// A corrupt or truncated snapshot must fail cleanly: an error, and the state
// and applied index exactly as they were (raft then tries an older snapshot
// rather than run on half a state).
func TestRestoreOfACorruptSnapshotKeepsTheOldState(t *testing.T) {
	good := encodedSnapshot(t, bootstrappedCluster(t), 40)

	invalid := bootstrappedCluster(t)
	invalid.Partitions[0].Replicas = append(invalid.Partitions[0].Replicas, invalid.Partitions[0].Primary)
	duplicateHolder := encodedSnapshot(t, invalid, 40)

	cases := map[string][]byte{
		"empty":               nil,
		"version byte only":   {encodingJSON},
		"unknown version":     append([]byte{2}, good[1:]...),
		"truncated":           good[:len(good)-10],
		"cut in half":         good[:len(good)/2],
		"garbage":             []byte("\x01\x00\x13\x37 definitely not json"),
		"trailing data":       append(append([]byte{}, good...), `{"more":1}`...),
		"null cluster":        append([]byte{encodingJSON}, `{"applied_index":3,"cluster":null}`...),
		"unknown field":       append([]byte{encodingJSON}, `{"applied_index":3,"clutser":{}}`...),
		"invalid cluster":     duplicateHolder,
		"partitions, no boot": append([]byte{encodingJSON}, `{"cluster":{"bootstrapped":false,"partitions":[{"id":0}]}}`...),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFSM()
			f.ApplyBatch([]*raft.Log{
				commandLog(t, 1, bootstrapCommand("p", "q")),
				commandLog(t, 2, upsertCommand("r", 2)),
			})
			before := f.cluster.Clone()

			err := f.Restore(io.NopCloser(bytes.NewReader(data)))
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v, want an error wrapping ErrCorruptSnapshot", err)
			}
			if !reflect.DeepEqual(f.cluster, before) {
				t.Fatalf("failed Restore changed the state")
			}
			if f.appliedIndex() != 2 {
				t.Fatalf("failed Restore moved the applied index to %d", f.appliedIndex())
			}
		})
	}
}

func TestRestoreReportsReadErrors(t *testing.T) {
	f := newFSM()
	good := encodedSnapshot(t, bootstrappedCluster(t), 1)
	r := io.MultiReader(bytes.NewReader(good[:20]), errReader{errors.New("disk on fire")})
	err := f.Restore(io.NopCloser(r))
	if !errors.Is(err, ErrCorruptSnapshot) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Restore = %v, want the read error", err)
	}
	if f.cluster.Bootstrapped {
		t.Fatalf("failed Restore changed the state")
	}
}

// FuzzRestore: any input either restores a valid cluster or fails leaving
// the previous state untouched; it never panics.
func FuzzRestore(f *testing.F) {
	good := encodedSnapshot(f, bootstrappedCluster(f), 12)
	f.Add(good)
	f.Add(good[:len(good)/3])
	f.Add(encodedSnapshot(f, failover.NewCluster(), 0))
	f.Add([]byte{})
	f.Add([]byte{encodingJSON, '{', '}'})
	f.Add([]byte{encodingJSON, 'n', 'u', 'l', 'l'})
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newFSM()
		m.Apply(commandLog(t, 1, bootstrapCommand("p", "q")))
		before := m.cluster.Clone()
		if err := m.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if !reflect.DeepEqual(m.cluster, before) || m.appliedIndex() != 1 {
				t.Fatalf("failed Restore (%v) changed the state", err)
			}
			return
		}
		if err := m.cluster.Validate(); err != nil {
			t.Fatalf("Restore accepted an invalid cluster: %v", err)
		}
		if m.cluster.Members == nil {
			t.Fatalf("Restore left a nil member map")
		}
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// memorySink is a raft.SnapshotSink in memory.
type memorySink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memorySink) ID() string    { return "memory" }
func (s *memorySink) Close() error  { s.closed = true; return nil }
func (s *memorySink) Cancel() error { s.cancelled = true; return nil }

func TestEverySubscriberIsToldOfChangesUntilItCancels(t *testing.T) {
	f := newFSM()
	first, cancelFirst := f.changes.subscribe()
	second, cancelSecond := f.changes.subscribe()
	defer cancelSecond()

	f.Apply(commandLog(t, 1, bootstrapCommand("a")))
	if !drained(first) || !drained(second) {
		t.Fatalf("not every subscriber was told of the change")
	}
	cancelFirst()
	cancelFirst() // cancelling twice is harmless
	f.Apply(commandLog(t, 2, upsertCommand("b", 2)))
	if drained(first) {
		t.Fatalf("a cancelled subscriber was still told")
	}
	if !drained(second) {
		t.Fatalf("the remaining subscriber was not told")
	}
}
