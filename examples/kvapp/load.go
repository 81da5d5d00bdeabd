package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/steward-dev/steward/hooks"
)

// The load report: every LoadInterval the app tells its agent the size of
// each partition it holds (its bbolt bucket's bytes in use), the requests
// per second it served for it (client reads and writes as primary,
// replicated writes as replica), and its disk's capacity and use
// (hooks.PublishLoad, POST /v1/app/load).

// requestCounter counts the requests served per partition.
type requestCounter struct {
	mu     sync.Mutex
	counts map[int]uint64
}

func (c *requestCounter) add(partition int) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[int]uint64{}
	}
	c.counts[partition]++
	c.mu.Unlock()
}

// take returns the counts so far and starts again from zero.
func (c *requestCounter) take() map[int]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = map[int]uint64{}
	return out
}

// bucketSizes are the bytes each partition's entries use in the data file,
// by bbolt's own accounting of its pages.
func (d *disk) bucketSizes() (map[int]int64, error) {
	out := map[int]int64{}
	err := d.db.View(func(tx *bolt.Tx) error {
		all := tx.Bucket(bucketPartitions)
		if all == nil {
			return nil
		}
		return all.ForEach(func(k, v []byte) error {
			if v != nil || len(k) != 4 {
				return nil
			}
			b := all.Bucket(k).Bucket(bucketEntries)
			if b == nil {
				return nil
			}
			st := b.Stats()
			out[int(binary.BigEndian.Uint32(k))] = int64(st.LeafInuse + st.BranchInuse + st.InlineBucketInuse)
			return nil
		})
	})
	return out, err
}

// diskUsage is the data dir's disk as the app reports it: the file
// system's own figures, or, with DiskCapacity set (a disk of that size
// simulated for demonstrations and tests), that capacity and the data
// file's size plus DiskReserved.
func (s *server) diskUsage() *hooks.DiskUsage {
	if s.cfg.DiskCapacity > 0 {
		used := s.cfg.DiskReserved
		if fi, err := os.Stat(filepath.Join(s.cfg.DataDir, dbFile)); err == nil {
			used += fi.Size()
		}
		return &hooks.DiskUsage{CapacityBytes: s.cfg.DiskCapacity, UsedBytes: min(used, s.cfg.DiskCapacity)}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.DataDir, &st); err != nil || st.Blocks == 0 {
		return nil
	}
	capacity := int64(st.Blocks) * st.Bsize
	return &hooks.DiskUsage{CapacityBytes: capacity, UsedBytes: capacity - int64(st.Bfree)*st.Bsize}
}

// loadReport measures what the report says now; since is when the
// counters last started from zero.
func (s *server) loadReport(since time.Time) hooks.LoadReport {
	counts := s.requests.take()
	secs := time.Since(since).Seconds()
	sizes, err := s.store.disk.bucketSizes()
	if err != nil {
		s.log.Warn("cannot measure the partitions' sizes", "err", err)
	}
	out := hooks.LoadReport{Disk: s.diskUsage(), Partitions: []hooks.PartitionLoad{}}
	for _, p := range s.store.holdings() {
		pl := hooks.PartitionLoad{Partition: p, SizeBytes: sizes[p]}
		if secs > 0 {
			pl.Load = float64(counts[p]) / secs
		}
		out.Partitions = append(out.Partitions, pl)
	}
	return out
}

// publishLoad reports to the agent every LoadInterval until Close.
func (s *server) publishLoad() {
	last := time.Now()
	measure := func() hooks.LoadReport {
		r := s.loadReport(last)
		last = time.Now()
		return r
	}
	hooks.PublishLoadEvery(s.ctx, s.client, s.cfg.AgentURL, s.cfg.APIToken, s.cfg.LoadInterval, measure, func(err error) {
		s.log.Debug("load report not taken", "err", err)
	})
}
