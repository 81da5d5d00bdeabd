package hooks

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDeliverAssignments measures webhook deliveries per second to a
// local receiver: a fresh Deliverer (the agent's DefaultConfig, so
// MaxConcurrency 4, and an AckStore on disk, as the agent has) is given n
// partitions at once, and the clock runs until every one is acknowledged
// (Pending is 0). The receiver is an httptest server that verifies each
// signature, as an app must, and answers 204. The figures are in
// docs/benchmarks.md, "Webhook deliveries per second".
func BenchmarkDeliverAssignments(b *testing.B) {
	for _, n := range []int{64, 256, 1024} {
		for _, conc := range []int{4, 16} {
			b.Run(fmt.Sprintf("partitions=%d/concurrency=%d", n, conc), func(b *testing.B) {
				benchDeliver(b, n, conc)
			})
		}
	}
}

// BenchmarkFullAssignment is what a node holding many partitions goes
// through at start-up with a fresh data dir: n partitions given at once to a
// Deliverer with the agent's DefaultConfig and an AckStore on disk, timed
// until every acknowledgement is recorded (Pending is 0). The receiver, on
// 127.0.0.1, verifies each signature and answers 204.
func BenchmarkFullAssignment(b *testing.B) {
	for _, n := range []int{4096, 65536} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			benchDeliver(b, n, DefaultConfig().MaxConcurrency)
		})
	}
}

// BenchmarkAckStoreSet is the cost of recording one acknowledgement in an
// AckStore that already holds n partitions: one appended record and one
// fsync, whatever n (plus, now and then, a compaction of the log, O(n) once
// per n+compactSlack changes).
func BenchmarkAckStoreSet(b *testing.B) {
	for _, n := range []int{64, 256, 1024, 4096, 65536} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			store := filledStore(b, n)
			i := 0
			for b.Loop() {
				if err := store.Set(i%n, Acked{Epoch: uint64(2 + i), Role: RolePrimary}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkAckStoreApply is the cost of recording a batch of 64
// acknowledgements with one write and one fsync (the Deliverer's group
// commit), per batch, in a store that holds n partitions.
func BenchmarkAckStoreApply(b *testing.B) {
	for _, n := range []int{4096, 65536} {
		b.Run(fmt.Sprintf("partitions=%d/batch=64", n), func(b *testing.B) {
			store := filledStore(b, n)
			batch := make([]AckChange, 64)
			i := 0
			for b.Loop() {
				for j := range batch {
					batch[j] = AckChange{Partition: (i*64 + j) % n, Acked: Acked{Epoch: uint64(2 + i), Role: RolePrimary}}
				}
				if err := store.Apply(batch); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "acks/s")
		})
	}
}

// filledStore is a store on disk holding n replicas at epoch 1, written in
// batches so that setting it up does not take n fsyncs.
func filledStore(b *testing.B, n int) *AckStore {
	b.Helper()
	store, err := OpenAckStore(filepath.Join(b.TempDir(), "acks.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	var batch []AckChange
	for p := 0; p < n; p++ {
		batch = append(batch, AckChange{Partition: p, Acked: Acked{Epoch: 1, Role: RoleReplica}})
		if len(batch) == 1024 || p == n-1 {
			if err := store.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return store
}

func benchDeliver(b *testing.B, n, concurrency int) {
	var received, rejected atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := ParseEvent(r, testSecret, time.Minute); err != nil {
			rejected.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	desired := make(map[int]Assignment, n)
	for p := 0; p < n; p++ {
		role := RoleReplica
		if p%3 == 0 {
			role = RolePrimary
		}
		desired[p] = Assignment{Partition: p, Epoch: 1, Role: role}
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		store, err := OpenAckStore(filepath.Join(b.TempDir(), "acks.json"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { store.Close() })
		cfg := DefaultConfig()
		cfg.NodeID, cfg.URL, cfg.Secret, cfg.MaxConcurrency = "n1", srv.URL, testSecret, concurrency
		d, err := NewDeliverer(cfg, store, discardSink{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		d.SetDesired(desired)
		deadline := start.Add(5 * time.Minute)
		for d.Pending() != 0 {
			if time.Now().After(deadline) {
				d.Close()
				b.Fatalf("%d of %d partitions still pending after 5 min", d.Pending(), n)
			}
			time.Sleep(200 * time.Microsecond)
		}
		total += time.Since(start)
		d.Close()
	}
	if r := rejected.Load(); r != 0 {
		b.Fatalf("the receiver rejected %d deliveries", r)
	}
	if got, want := received.Load(), int64(n*b.N); got != want {
		b.Fatalf("the receiver got %d deliveries, want %d (one per partition)", got, want)
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "deliveries/s")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/assignment")
	b.ReportMetric(0, "ns/op")
}

// discardSink is a CopySink for events that carry no copy.
type discardSink struct{}

func (discardSink) CopyDone(int, string)           {}
func (discardSink) CopyFailed(int, string, string) {}

// BenchmarkSetDesiredUnchanged is what the agent pays every second (its
// desired loop also runs on a ticker) for a node holding n partitions that
// are all acknowledged: a copy and a comparison of the map, no delivery.
func BenchmarkSetDesiredUnchanged(b *testing.B) {
	for _, n := range []int{4096, 65536} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			store := filledStore(b, n)
			desired := make(map[int]Assignment, n)
			for p := range n {
				desired[p] = Assignment{Partition: p, Epoch: 1, Role: RoleReplica}
			}
			cfg := DefaultConfig()
			cfg.NodeID, cfg.URL, cfg.Secret = "n1", "http://127.0.0.1:1/unused", testSecret
			d, err := NewDeliverer(cfg, store, discardSink{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			d.SetDesired(desired)
			if d.Pending() != 0 {
				b.Fatalf("%d pending: the store should hold the whole assignment", d.Pending())
			}
			for b.Loop() {
				d.SetDesired(desired)
			}
			if d.Pending() != 0 || d.Stats().Deliveries[DeliveryKey{TypeAssign, ResultError}] != 0 {
				b.Fatal("an unchanged state started deliveries")
			}
		})
	}
}
