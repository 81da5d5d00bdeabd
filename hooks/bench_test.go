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

// BenchmarkAckStoreSet is the cost of recording one acknowledgement in an
// AckStore that already holds n partitions: the store rewrites and fsyncs
// its whole file on every change, which bounds the delivery rate above.
func BenchmarkAckStoreSet(b *testing.B) {
	for _, n := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			store, err := OpenAckStore(filepath.Join(b.TempDir(), "acks.json"))
			if err != nil {
				b.Fatal(err)
			}
			for p := 0; p < n; p++ {
				if err := store.Set(p, Acked{Epoch: 1, Role: RoleReplica}); err != nil {
					b.Fatal(err)
				}
			}
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
		cfg := DefaultConfig()
		cfg.NodeID, cfg.URL, cfg.Secret, cfg.MaxConcurrency = "n1", srv.URL, testSecret, concurrency
		d, err := NewDeliverer(cfg, store, discardSink{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		d.SetDesired(desired)
		deadline := start.Add(2 * time.Minute)
		for d.Pending() != 0 {
			if time.Now().After(deadline) {
				d.Close()
				b.Fatalf("%d of %d partitions still pending after 2 min", d.Pending(), n)
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
