package main

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
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
	if capacity := s.diskCapacity.Load(); capacity > 0 {
		used := s.diskReserved.Load()
		if fi, err := os.Stat(filepath.Join(s.cfg.DataDir, dbFile)); err == nil {
			used += fi.Size()
		}
		return &hooks.DiskUsage{CapacityBytes: capacity, UsedBytes: min(used, capacity)}
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

// simulatedDisk is the body of POST /internal/disk.
type simulatedDisk struct {
	CapacityBytes int64 `json:"capacity_bytes"`
	ReservedBytes int64 `json:"reserved_bytes"`
}

// handleSimulatedDisk is POST /internal/disk: it changes the simulated
// disk of the load reports (--disk-capacity, --disk-reserved) while the
// app runs, to show what a filling disk does. A capacity of 0 reports the
// data dir's file system again.
func (s *server) handleSimulatedDisk(w http.ResponseWriter, r *http.Request) {
	var in simulatedDisk
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: `body must be {"capacity_bytes": N, "reserved_bytes": N}: ` + err.Error()})
		return
	}
	if in.CapacityBytes < 0 || in.ReservedBytes < 0 || in.ReservedBytes > in.CapacityBytes {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "reserved_bytes must be between 0 and capacity_bytes"})
		return
	}
	s.diskReserved.Store(in.ReservedBytes)
	s.diskCapacity.Store(in.CapacityBytes)
	writeJSON(w, http.StatusOK, in)
}
