package main

import (
	"errors"
	"hash/fnv"
	"sort"
	"sync"
	"time"

	"github.com/steward-dev/steward/hooks"
)

// Errors of the local data path. The HTTP layer maps them to status codes.
var (
	// errNotPrimary: this node does not hold the partition as its primary
	// (or does not have a complete copy of it yet); the caller should look
	// the primary up again and retry there.
	errNotPrimary = errors.New("kvapp: not the primary of this partition")
	// errFenced: a write carried an epoch older than one this node already
	// holds for the partition; its sender has been superseded.
	errFenced = errors.New("kvapp: epoch older than the one held (fenced)")
	// errNotHeld: this node has no complete copy of the partition to give.
	errNotHeld = errors.New("kvapp: partition not held")
)

// partitionOf maps a key to its partition: FNV-1a 32-bit of the key modulo
// the number of partitions. Every node and every client must agree on it.
func partitionOf(key string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

// version orders the writes of one key across primaries: a newer epoch
// always wins, and within an epoch (one primary) the primary's sequence
// does. Copies are merged by it, so a copy that lands after a replicated
// write never brings an older value back.
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

// copyTarget is a peer copying a partition from this node. Writes applied
// here after it took its snapshot are forwarded to it, so the copy misses
// nothing even before the primary's partition table lists the migration.
type copyTarget struct {
	addr  string
	since time.Time
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
	data     map[string]entry
	seq      uint64
	copyTo   map[string]copyTarget
}

// store is the app's in-memory data: one map per partition under a single
// mutex. One lock keeps "apply a write and list where it must go" atomic
// with "register a copy target and snapshot", which is what makes copies
// lossless.
type store struct {
	mu    sync.Mutex
	parts map[int]*partition
}

func newStore() *store { return &store{parts: map[int]*partition{}} }

// get returns the partition, creating an empty, incomplete one. Callers
// hold mu.
func (s *store) get(id int) *partition {
	p := s.parts[id]
	if p == nil {
		p = &partition{role: hooks.RoleNone, data: map[string]entry{}}
		s.parts[id] = p
	}
	return p
}

func (p *partition) raiseFence(e uint64) {
	if e > p.fence {
		p.fence = e
	}
}

// applyEntry stores e unless the key already has a newer version.
func (p *partition) applyEntry(key string, e entry) {
	if cur, ok := p.data[key]; ok && !e.ver.newerThan(cur.ver) {
		return
	}
	p.data[key] = e
}

// dest is a peer a write must reach before it is acknowledged.
type dest struct {
	node       string
	addr       string // empty: look it up in the members list
	registered bool   // a copy target registered here, not (yet) in the table
	since      time.Time
}

// primaryWrite applies a client write as the partition's primary and
// returns the replication message plus the registered copy targets.
func (s *store) primaryWrite(id int, key string, value []byte) (replicateMsg, []dest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil || p.role != hooks.RolePrimary || !p.complete {
		return replicateMsg{}, nil, errNotPrimary
	}
	if p.fence > p.writeEpoch {
		// Someone wrote at a newer epoch: another node is primary now.
		return replicateMsg{}, nil, errFenced
	}
	p.seq++
	ver := version{Epoch: p.writeEpoch, Seq: p.seq}
	p.applyEntry(key, entry{value: value, ver: ver})
	msg := replicateMsg{Partition: id, Epoch: p.writeEpoch, Key: key, Value: value, Version: ver}
	return msg, p.registeredDests(""), nil
}

func (p *partition) registeredDests(except string) []dest {
	var out []dest
	for node, t := range p.copyTo {
		if node != except {
			out = append(out, dest{node: node, addr: t.addr, registered: true, since: t.since})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].node < out[j].node })
	return out
}

// read returns a key's value as the partition's primary.
func (s *store) read(id int, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[id]
	if p == nil || p.role != hooks.RolePrimary || !p.complete {
		return nil, false, errNotPrimary
	}
	if p.fence > p.writeEpoch {
		return nil, false, errFenced
	}
	e, ok := p.data[key]
	return e.value, ok, nil
}

// applyReplicated applies a write sent by the primary (or forwarded by a
// copy source). It refuses an epoch older than the fence and returns the
// copy targets registered here, which the write must reach too.
func (s *store) applyReplicated(msg replicateMsg, from string) ([]dest, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.get(msg.Partition)
	if msg.Epoch < p.fence {
		return nil, p.fence, errFenced
	}
	p.raiseFence(msg.Epoch)
	p.applyEntry(msg.Key, entry{value: msg.Value, ver: msg.Version})
	return p.registeredDests(from), p.fence, nil
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
	if e > p.writeEpoch {
		p.writeEpoch = e
	}
	p.raiseFence(e)
	return true
}

// dumpEntry is one key of a partition dump.
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

// snapshot returns a complete partition's keys and, when target is given,
// registers it for every later write in the same critical section.
func (s *store) snapshot(id int, target, addr string, now time.Time) (partitionDump, error) {
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
		p.copyTo[target] = copyTarget{addr: addr, since: now}
	}
	d := partitionDump{Partition: id, Epoch: p.epoch, Entries: make([]dumpEntry, 0, len(p.data))}
	for k, e := range p.data {
		d.Entries = append(d.Entries, dumpEntry{Key: k, Value: e.value, Version: e.ver})
	}
	sort.Slice(d.Entries, func(i, j int) bool { return d.Entries[i].Key < d.Entries[j].Key })
	return d, nil
}

// merge folds a copied dump into the partition, keeping newer versions.
func (s *store) merge(d partitionDump) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.get(d.Partition)
	for _, e := range d.Entries {
		p.applyEntry(e.Key, entry{value: e.Value, ver: e.Version})
	}
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
// state, so that late writes from a superseded primary are still refused.
func (p *partition) clear() {
	p.role = hooks.RoleNone
	p.complete = false
	p.data = map[string]entry{}
	p.copyTo = nil
}

// partitionStatus is one partition in GET /internal/status.
type partitionStatus struct {
	Partition  int    `json:"partition"`
	Role       string `json:"role"`
	Epoch      uint64 `json:"epoch"`
	WriteEpoch uint64 `json:"write_epoch,omitempty"`
	Fence      uint64 `json:"fence"`
	Complete   bool   `json:"complete"`
	Keys       int    `json:"keys"`
}

func (s *store) status() []partitionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]partitionStatus, 0, len(s.parts))
	for id, p := range s.parts {
		out = append(out, partitionStatus{Partition: id, Role: p.role, Epoch: p.epoch, WriteEpoch: p.writeEpoch,
			Fence: p.fence, Complete: p.complete, Keys: len(p.data)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}
