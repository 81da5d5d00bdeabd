package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The app's data on disk: one bbolt file, kvapp.db, in --data-dir.
//
//	meta                 format → "kvapp-1"
//	partitions
//	  <partition, 4 bytes big endian>
//	    state            JSON of partitionState
//	    entries          key → version (epoch, seq: 8 bytes big endian each), value
//
// Every change the store makes in memory is queued here, under the store's
// lock, in the order it was made; a single committer writes whatever is
// queued in one bbolt transaction (one fsync for many changes: group
// commit) and then wakes whoever waits for those changes. Nothing is
// acknowledged (to a client, to a primary, to the agent) before the
// changes it depends on are durable: callers wait for the sequence number
// enqueue returned.
//
// A failed commit poisons the store: every later wait fails, the health
// check fails, and the app must be restarted (what was queued and not
// written cannot be told apart from what was, so nothing after it may be
// acknowledged).

const (
	dbFile       = "kvapp.db"
	formatKey    = "format"
	formatValue  = "kvapp-1"
	versionBytes = 16
)

var (
	bucketMeta       = []byte("meta")
	bucketPartitions = []byte("partitions")
	keyState         = []byte("state")
	bucketEntries    = []byte("entries")
)

// errDiskFailed wraps the commit error that poisoned the store.
var errDiskFailed = errors.New("kvapp: the data dir refused a write; restart the app")

// partitionState is what is kept of a partition besides its entries.
type partitionState struct {
	Role       string `json:"role"`
	Epoch      uint64 `json:"epoch"`
	WriteEpoch uint64 `json:"write_epoch"`
	Fence      uint64 `json:"fence"`
	Complete   bool   `json:"complete"`
	// SeqReserved bounds the sequence numbers this node may have stamped
	// on writes as primary: a restarted primary goes on from it, never
	// reusing a sequence number a replica may already hold.
	SeqReserved uint64 `json:"seq_reserved"`
	// SplitInto: the partition was split into these children (see
	// partition.splitInto).
	SplitInto []int `json:"split_into,omitempty"`
}

type diskOpKind uint8

const (
	opEntry diskOpKind = iota + 1 // put one entry
	opState                       // put the partition's state
	opClear                       // drop the partition's entries
)

// diskOp is one queued change.
type diskOp struct {
	kind      diskOpKind
	partition int
	key       string
	e         entry
	state     partitionState
}

// disk is the durable side of the store.
type disk struct {
	db *bolt.DB

	mu       sync.Mutex
	queue    []diskOp
	queued   uint64 // sequence number of the last op queued
	durable  uint64 // sequence number of the last op committed
	failed   error
	closed   bool
	progress chan struct{} // closed (and replaced) at every commit or failure
	wake     chan struct{}
	done     chan struct{}
}

// openDisk opens (or creates) the data dir and loads every partition.
func openDisk(dir string) (*disk, map[int]*partition, error) {
	if dir == "" {
		return nil, nil, errors.New("kvapp: no data dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("kvapp: data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, dbFile), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("kvapp: open %s: %w (is another kvapp using this data dir?)", filepath.Join(dir, dbFile), err)
	}
	parts := map[int]*partition{}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch f := meta.Get([]byte(formatKey)); {
		case f == nil:
			if err := meta.Put([]byte(formatKey), []byte(formatValue)); err != nil {
				return err
			}
		case string(f) != formatValue:
			return fmt.Errorf("data of format %q, this kvapp reads %q", f, formatValue)
		}
		all, err := tx.CreateBucketIfNotExists(bucketPartitions)
		if err != nil {
			return err
		}
		return all.ForEachBucket(func(k []byte) error {
			if len(k) != 4 {
				return fmt.Errorf("partition key %x", k)
			}
			p, err := loadPartition(all.Bucket(k))
			if err != nil {
				return fmt.Errorf("partition %d: %w", binary.BigEndian.Uint32(k), err)
			}
			parts[int(binary.BigEndian.Uint32(k))] = p
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("kvapp: load %s: %w", dir, err)
	}
	d := &disk{db: db, progress: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go d.commitLoop()
	return d, parts, nil
}

func loadPartition(b *bolt.Bucket) (*partition, error) {
	var st partitionState
	if raw := b.Get(keyState); raw != nil {
		if err := json.Unmarshal(raw, &st); err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
	}
	p := newPartition()
	p.role, p.epoch, p.writeEpoch, p.fence, p.complete = st.Role, st.Epoch, st.WriteEpoch, st.Fence, st.Complete
	if p.role == "" {
		p.role = roleNone
	}
	// Sequence numbers up to SeqReserved may have been handed out before a
	// crash; the store reserves a new block before stamping any more.
	p.seq, p.seqReserved = st.SeqReserved, st.SeqReserved
	p.splitInto = st.SplitInto
	entries := b.Bucket(bucketEntries)
	if entries == nil {
		return p, nil
	}
	err := entries.ForEach(func(k, v []byte) error {
		if len(v) < versionBytes {
			return fmt.Errorf("entry %q: %d bytes", k, len(v))
		}
		p.data[string(k)] = entry{
			ver:   version{Epoch: binary.BigEndian.Uint64(v), Seq: binary.BigEndian.Uint64(v[8:])},
			value: append([]byte(nil), v[versionBytes:]...),
		}
		return nil
	})
	return p, err
}

// enqueue queues ops and returns the sequence number to wait for. Callers
// hold the store's lock, so that the disk sees changes in the order memory
// did. With no ops it returns the last sequence number queued: waiting for
// it makes sure that whatever this caller saw in memory is durable.
func (d *disk) enqueue(ops ...diskOp) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(ops) > 0 && !d.closed {
		d.queue = append(d.queue, ops...)
		d.queued += uint64(len(ops))
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
	return d.queued
}

// wait returns once every op up to seq is durable.
func (d *disk) wait(ctx context.Context, seq uint64) error {
	for {
		d.mu.Lock()
		durable, failed, closed, progress := d.durable, d.failed, d.closed, d.progress
		d.mu.Unlock()
		switch {
		case failed != nil:
			return fmt.Errorf("%w: %v", errDiskFailed, failed)
		case durable >= seq:
			return nil
		case closed:
			return errors.New("kvapp: data dir closed")
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// healthy reports the commit error that poisoned the store, if any.
func (d *disk) healthy() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// commitLoop writes the queue, one transaction per round, until close.
func (d *disk) commitLoop() {
	defer close(d.done)
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed {
			d.mu.Unlock()
			<-d.wake
			d.mu.Lock()
		}
		batch, last, closed, failed := d.queue, d.queued, d.closed, d.failed
		d.queue = nil
		d.mu.Unlock()
		if len(batch) == 0 && closed {
			return
		}
		err := failed
		if err == nil {
			err = d.db.Update(func(tx *bolt.Tx) error { return applyOps(tx, batch) })
		}
		d.mu.Lock()
		if err != nil && d.failed == nil {
			d.failed = err
		}
		if err == nil {
			d.durable = last
		}
		close(d.progress)
		d.progress = make(chan struct{})
		d.mu.Unlock()
	}
}

func applyOps(tx *bolt.Tx, ops []diskOp) error {
	all := tx.Bucket(bucketPartitions)
	for _, op := range ops {
		var k [4]byte
		binary.BigEndian.PutUint32(k[:], uint32(op.partition))
		b, err := all.CreateBucketIfNotExists(k[:])
		if err != nil {
			return err
		}
		switch op.kind {
		case opEntry:
			entries, err := b.CreateBucketIfNotExists(bucketEntries)
			if err != nil {
				return err
			}
			v := make([]byte, versionBytes+len(op.e.value))
			binary.BigEndian.PutUint64(v, op.e.ver.Epoch)
			binary.BigEndian.PutUint64(v[8:], op.e.ver.Seq)
			copy(v[versionBytes:], op.e.value)
			if err := entries.Put([]byte(op.key), v); err != nil {
				return err
			}
		case opState:
			raw, err := json.Marshal(op.state)
			if err != nil {
				return err
			}
			if err := b.Put(keyState, raw); err != nil {
				return err
			}
		case opClear:
			if b.Bucket(bucketEntries) != nil {
				if err := b.DeleteBucket(bucketEntries); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// close writes what is queued, stops the committer and closes the file.
func (d *disk) close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	<-d.done
	return d.db.Close()
}
