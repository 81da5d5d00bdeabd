package main

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/hooks"
)

// Errors of the local data path. The HTTP layer maps them to status codes.
var (
	// errNotPrimary: this node does not hold the partition as its primary
	// (or does not have a complete copy of it yet); the caller should look
	// the primary up again and retry there.
	errNotPrimary = errors.New("kvapp: not the primary of this partition")
	// errSyncing: this node has just become the partition's primary and is
	// still making sure every copy has what it holds; retry shortly.
	errSyncing = errors.New("kvapp: the new primary is still bringing its copies up to date")
	// errFenced: a write carried an epoch older than one this node already
	// holds for the partition; its sender has been superseded.
	errFenced = errors.New("kvapp: epoch older than the one held (fenced)")
	// errNotHeld: this node has no copy of the partition to give, or was
	// not told to hold it.
	errNotHeld = errors.New("kvapp: partition not held")
	// errOutcomeUnknown: a write failed after it may have reached a copy;
	// it may or may not have been made, and is never retried by kvapp
	// itself (a retry would make it a second time, perhaps after another
	// client's write). The client gets 503 with Kvapp-Outcome: unknown.
	errOutcomeUnknown = errors.New("kvapp: the write may or may not have been made")
	// errSplitting: the partition is being split (partition.split): its
	// keys are served by its children once the agent activates them; the
	// caller looks the partition up again and retries.
	errSplitting = errors.New("kvapp: the partition is being split; its children take over shortly")
)

const roleNone = hooks.RoleNone

// seqBlock is how many sequence numbers a primary reserves on disk at a
// time (see partitionState.SeqReserved).
const seqBlock = 1 << 20

// partitionOf maps a key to its partition in a table of partitions
// partitions that never split: the even range of the key space holding
// FNV-1a 32-bit of the key (failover.EvenKeyIndex). A table whose rows
// carry key ranges is routed by them instead (clusterView.partitionFor),
// which gives the same answer until a partition splits.
func partitionOf(key string, partitions int) int {
	return failover.EvenKeyIndex(failover.KeyHash(key), partitions)
}

// version orders the writes of one key across primaries: a newer epoch
// always wins, and within an epoch (one primary) the primary's sequence
// does. Copies are merged by it, so a copy that lands after a replicated
// write never brings an older value back, and two writes of one key in
// flight at once end in the same order on every copy.
type version struct {
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

func (v version) newerThan(o version) bool {
	if v.Epoch != o.Epoch {
		return v.Epoch > o.Epoch
	}
	return v.Seq > o.Seq
}

type entry struct {
	value []byte
	ver   version
}

// shadow is what reads of a key see while the key's latest version is not
// yet known to be on every copy: the last version that is (ok false: the
// key did not exist).
type shadow struct {
	e  entry
	ok bool
}

// copyTarget is a peer copying a partition from this node. Writes applied
// here after it took its snapshot are forwarded to it, so the copy misses
// nothing even before the primary's partition table lists the migration.
type copyTarget struct {
	addr  string
	since time.Time
	// index is the state index of the peer's own table when it asked for
	// the snapshot: a table of this node at least that new that shows the
	// peer failed shows a failure after the registration (isStale).
	index uint64
}

// partition is this node's state for one partition.
type partition struct {
	// role and epoch are what the webhooks last said (the event fencing
	// state): an event with an older epoch is acknowledged and ignored.
	role  string
	epoch uint64
	// writeEpoch is the epoch this node stamps on its writes as primary:
	// the promote's epoch, raised when the agent's table shows this node
	// still primary at a later epoch (migrations bump epochs without
	// telling the primary).
	writeEpoch uint64
	// fence is the highest epoch seen from anyone (webhooks, replicated
	// writes, the table); replicated writes older than it are refused.
	fence uint64
	// complete: data holds a full copy (assigned empty, or copied).
	complete bool
	// splitInto, once this node (its primary) has split the partition
	// (partition.split), are the children that hold its keys now: it takes
	// no more writes and serves no more reads. Kept on disk; dropped by any
	// later event for the partition (a release once the split finished, or
	// a promote, demote or assign when it was called off).
	splitInto []int
	// data is the latest version of every key this node has, whether or
	// not every copy has it yet: what is on disk, copied and replicated.
	data map[string]entry
	// seq is the last sequence number stamped as primary; seqReserved the
	// bound reserved on disk.
	seq, seqReserved uint64

	// As primary only, in memory only. hidden holds, for each key whose
	// latest version is still being replicated, the version reads see
	// instead. synced is set once every copy has had everything in data
	// (after this node became primary, or restarted as one): until then
	// nothing is served. syncGen counts the times the node became primary
	// or stopped being it, so that a sync of an earlier time is ignored.
	hidden  map[string]shadow
	synced  bool
	syncing bool
	syncGen uint64

	copyTo map[string]copyTarget
}

func newPartition() *partition {
	return &partition{role: roleNone, data: map[string]entry{}}
}

// store is the app's data: in memory, under a single mutex, and on disk
// (every change is queued to disk under the same mutex, in order). One
// lock keeps "apply a write and list where it must go" atomic with
// "register a copy target and snapshot", which is what makes copies
// lossless.
type store struct {
	mu    sync.Mutex
	parts map[int]*partition
	disk  *disk
}

// openStore loads the data dir.
func openStore(dir string) (*store, error) {
	d, parts, err := openDisk(dir)
	if err != nil {
		return nil, err
	}
	return &store{parts: parts, disk: d}, nil
}

func (s *store) close() error { return s.disk.close() }

// durable waits until every change queued up to seq is on disk.
func (s *store) durable(ctx context.Context, seq uint64) error { return s.disk.wait(ctx, seq) }

// get returns the partition, creating an empty, incomplete one. Callers
// hold mu.
func (s *store) get(id int) *partition {
	p := s.parts[id]
	if p == nil {
		p = newPartition()
		s.parts[id] = p
	}
	return p
}

func (p *partition) state() partitionState {
	return partitionState{Role: p.role, Epoch: p.epoch, WriteEpoch: p.writeEpoch, Fence: p.fence, Complete: p.complete, SeqReserved: p.seqReserved, SplitInto: p.splitInto}
}

// saveState queues p's state; callers hold mu.
func (s *store) saveState(id int, p *partition) uint64 {
	return s.disk.enqueue(diskOp{kind: opState, partition: id, state: p.state()})
}

// tail is the last change queued: waiting for it makes what the caller saw
// in memory durable. Callers hold mu.
func (s *store) tail() uint64 { return s.disk.enqueue() }

func (p *partition) raiseFence(e uint64) bool {
	if e > p.fence {
		p.fence = e
		return true
	}
	return false
}

// applyEntry stores e unless the key already has the same or a newer
// version, and reports whether it did.
func (p *partition) applyEntry(key string, e entry) bool {
	if cur, ok := p.data[key]; ok && !e.ver.newerThan(cur.ver) {
		return false
	}
	p.data[key] = e
	return true
}

// applyEntries applies entries and queues those that changed; callers
// hold mu. It returns the sequence number to wait for.
func (s *store) applyEntries(id int, p *partition, entries []dumpEntry) uint64 {
	var ops []diskOp
	for _, de := range entries {
		e := entry{value: de.Value, ver: de.Version}
		if p.applyEntry(de.Key, e) {
			ops = append(ops, diskOp{kind: opEntry, partition: id, key: de.Key, e: e})
		}
	}
	return s.disk.enqueue(ops...)
}

// dest is a peer a write must reach before it is acknowledged.
type dest struct {
	node       string
	addr       string // empty: look it up in the members list
	registered bool   // a copy target registered here, not (yet) in the table
	since      time.Time
	index      uint64 // a registered target's table index (copyTarget.index)
}

// pendingWrite is a write this node made as primary, on its way to every
// copy.
type pendingWrite struct {
	msg replicateMsg
	// registered are the copy targets registered here when it was made.
	registered []dest
	// disk is the sequence number of its change on this node's disk;
	// persistFirst: wait for it before sending the write anywhere (it
	// reserved a new block of sequence numbers).
	disk         uint64
	persistFirst bool
}

// primaryWrite makes a client write as the partition's primary: it is in
// data (and queued to disk) at once, but reads go on seeing the key's
// previous version until confirm says every copy has it.
func (s *store) primaryWrite(id int, key string, value []byte) (pendingWrite, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if err := p.servable(); err != nil {
		return pendingWrite{}, err
	}
	var ops []diskOp
	persistFirst := false
	if p.seq+1 > p.seqReserved {
		p.seqReserved = p.seq + seqBlock
		ops = append(ops, diskOp{kind: opState, partition: id, state: p.state()})
		persistFirst = true
	}
	p.seq++
	e := entry{value: value, ver: version{Epoch: p.writeEpoch, Seq: p.seq}}
	if _, ok := p.hidden[key]; !ok {
		cur, had := p.data[key]
		if p.hidden == nil {
			p.hidden = map[string]shadow{}
		}
		p.hidden[key] = shadow{e: cur, ok: had}
	}
	if !p.applyEntry(key, e) {
		return pendingWrite{}, errFenced // a newer version from a newer primary
	}
	ops = append(ops, diskOp{kind: opEntry, partition: id, key: key, e: e})
	msg := replicateMsg{Partition: id, Epoch: p.writeEpoch, Entries: []dumpEntry{{Key: key, Value: value, Version: e.ver}}}
	return pendingWrite{msg: msg, registered: p.registeredDests(), disk: s.disk.enqueue(ops...), persistFirst: persistFirst}, nil
}

// epochOf is the epoch the webhooks last gave for partition id (0 if none):
// the lease must grant the partition at an epoch no newer than it.
func (s *store) epochOf(id int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.parts[id]; p != nil {
		return p.epoch
	}
	return 0
}

// servable says whether a primary may serve reads and take writes now.
func (p *partition) servable() error {
	switch {
	case p == nil || p.role != hooks.RolePrimary || !p.complete:
		return errNotPrimary
	case p.splitInto != nil:
		return errSplitting
	case p.fence > p.writeEpoch:
		// Someone wrote at a newer epoch: another node is primary now.
		return errFenced
	case !p.synced:
		return errSyncing
	}
	return nil
}

// confirm makes a write every copy has visible to reads (unless a newer
// version of the key already is).
func (s *store) confirm(id int, key string, e entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil {
		return
	}
	h, pending := p.hidden[key]
	switch {
	case !pending:
		// Already visible: a newer write of the key was confirmed first.
	case !p.data[key].ver.newerThan(e.ver):
		delete(p.hidden, key) // the latest version is on every copy
	case !h.ok || e.ver.newerThan(h.e.ver):
		p.hidden[key] = shadow{e: e, ok: true}
	}
}

// registeredDests are the copy targets registered here but those in
// except (the nodes a write has passed through).
func (p *partition) registeredDests(except ...string) []dest {
	var out []dest
	for node, t := range p.copyTo {
		if !slices.Contains(except, node) {
			out = append(out, dest{node: node, addr: t.addr, registered: true, since: t.since, index: t.index})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node < out[j].node })
	return out
}

// read returns what a read of key sees on the partition's primary: the
// latest version every copy has.
func (s *store) read(id int, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if err := p.servable(); err != nil {
		return nil, false, err
	}
	if h, pending := p.hidden[key]; pending {
		return h.e.value, h.ok, nil
	}
	e, ok := p.data[key]
	return e.value, ok, nil
}

// applyReplicated applies writes sent by the primary (or forwarded by a
// copy source), queued to disk. It refuses an epoch older than the fence,
// and a partition this node was not told to hold; it returns the copy
// targets registered here, which the writes must reach too, and the
// sequence number to wait for before answering.
func (s *store) applyReplicated(msg replicateMsg, from string) ([]dest, uint64, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.get(msg.Partition)
	if msg.Epoch < p.fence {
		return nil, p.fence, 0, errFenced
	}
	if p.role == roleNone {
		return nil, p.fence, 0, errNotHeld
	}
	if p.raiseFence(msg.Epoch) {
		s.saveState(msg.Partition, p)
	}
	seq := s.applyEntries(msg.Partition, p, msg.Entries)
	return p.registeredDests(append(slices.Clone(msg.Via), from)...), p.fence, seq, nil
}

// adoptWriteEpoch raises the primary's write epoch to e, which the agent's
// table shows with this node as primary. It reports whether the node is
// still primary here.
func (s *store) adoptWriteEpoch(id int, e uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil || p.role != hooks.RolePrimary {
		return false
	}
	changed := false
	if e > p.writeEpoch {
		p.writeEpoch = e
		changed = true
	}
	if p.raiseFence(e) || changed {
		s.saveState(id, p)
	}
	return true
}

// dumpEntry is one key of a partition dump or of a replicated batch.
type dumpEntry struct {
	Key     string  `json:"key"`
	Value   []byte  `json:"value"`
	Version version `json:"version"`
}

// partitionDump is GET /internal/partitions/{p}.
type partitionDump struct {
	Partition int         `json:"partition"`
	Epoch     uint64      `json:"epoch"`
	Entries   []dumpEntry `json:"entries"`
}

// snapshot returns a complete partition's keys (their latest versions,
// replicated or not) and, when target is given, registers it for every
// later write in the same critical section; index is the target's table
// index.
func (s *store) snapshot(id int, target, addr string, index uint64, now time.Time) (partitionDump, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil || !p.complete {
		return partitionDump{}, errNotHeld
	}
	if target != "" && addr != "" {
		if p.copyTo == nil {
			p.copyTo = map[string]copyTarget{}
		}
		p.copyTo[target] = copyTarget{addr: addr, since: now, index: index}
	}
	return partitionDump{Partition: id, Epoch: p.epoch, Entries: p.entries()}, nil
}

func (p *partition) entries() []dumpEntry {
	out := make([]dumpEntry, 0, len(p.data))
	for k, e := range p.data {
		out = append(out, dumpEntry{Key: k, Value: e.value, Version: e.ver})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// merge folds a copied dump into the partition, keeping newer versions, and
// returns the sequence number to wait for.
func (s *store) merge(d partitionDump) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyEntries(d.Partition, s.get(d.Partition), d.Entries)
}

// dropCopyTarget forgets a registered copy target.
func (s *store) dropCopyTarget(id int, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.parts[id]; p != nil {
		delete(p.copyTo, node)
	}
}

// clear drops a partition's data (release, rejoin) but keeps its fencing
// state, so that late writes from a superseded primary are still refused;
// callers hold mu. It returns the sequence number to wait for.
func (s *store) clear(id int, p *partition) uint64 {
	p.role = roleNone
	p.complete = false
	p.splitInto = nil
	p.data = map[string]entry{}
	p.copyTo = nil
	p.leavePrimary()
	s.disk.enqueue(diskOp{kind: opClear, partition: id})
	return s.saveState(id, p)
}

// leavePrimary forgets what only a primary keeps.
func (p *partition) leavePrimary() {
	p.hidden = nil
	p.synced = false
	p.syncGen++
}

// syncSnapshot returns what a partition that must be synced holds, or
// false when it needs no sync (not primary, already synced).
func (s *store) syncSnapshot(id int) (replicateMsg, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil {
		return replicateMsg{}, 0, false
	}
	if p.role != hooks.RolePrimary || !p.complete || p.synced {
		p.syncing = false // the sync job ends: a later one may start
		return replicateMsg{}, 0, false
	}
	return replicateMsg{Partition: id, Epoch: p.writeEpoch, Entries: p.entries()}, p.syncGen, true
}

// syncDone records that every copy has had msg: the partition is served,
// its keys visible as far as msg carried them.
func (s *store) syncDone(msg replicateMsg, gen uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[msg.Partition]
	if p == nil || p.syncGen != gen || p.role != hooks.RolePrimary {
		return false
	}
	pushed := make(map[string]version, len(msg.Entries))
	for _, e := range msg.Entries {
		pushed[e.Key] = e.Version
	}
	for k := range p.hidden {
		if v, ok := pushed[k]; ok && !p.data[k].ver.newerThan(v) {
			delete(p.hidden, k)
		}
	}
	p.synced, p.syncing = true, false
	return true
}

// holdings are the partitions this node holds in full, for the report to
// the agent.
func (s *store) holdings() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for id, p := range s.parts {
		if p.complete && p.role != roleNone {
			out = append(out, id)
		}
	}
	sort.Ints(out)
	return out
}

// primariesToSync are the partitions held as primary that are not served
// yet (after a restart, all of them).
func (s *store) primariesToSync() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for id, p := range s.parts {
		if p.role == hooks.RolePrimary && p.complete && !p.synced {
			out = append(out, id)
		}
	}
	sort.Ints(out)
	return out
}

// partitionStatus is one partition in GET /internal/status.
type partitionStatus struct {
	Partition  int    `json:"partition"`
	Role       string `json:"role"`
	Epoch      uint64 `json:"epoch"`
	WriteEpoch uint64 `json:"write_epoch,omitempty"`
	Fence      uint64 `json:"fence"`
	Complete   bool   `json:"complete"`
	Synced     bool   `json:"synced,omitempty"`
	Keys       int    `json:"keys"`
	Pending    int    `json:"pending,omitempty"`
}

func (s *store) status() []partitionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]partitionStatus, 0, len(s.parts))
	for id, p := range s.parts {
		out = append(out, partitionStatus{Partition: id, Role: p.role, Epoch: p.epoch, WriteEpoch: p.writeEpoch,
			Fence: p.fence, Complete: p.complete, Synced: p.synced, Keys: len(p.data), Pending: len(p.hidden)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}
