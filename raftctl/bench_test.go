package raftctl

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

// BenchmarkApply measures committed applies on one node with raft-boltdb on
// disk (every batch is fsynced), from many concurrent appliers so that group
// commit (BatchApplyCh) has something to group. It reports the latency of a
// single Apply at the 50th and 99th percentile next to the throughput.
//
//	go test -run '^$' -bench Apply ./raftctl
func BenchmarkApply(b *testing.B) {
	cfg := testConfig("bench", b.TempDir())
	n := startNode(b, cfg)
	if err := n.Bootstrap([]Server{{ID: "bench", Address: n.Addr(), Voter: true}}); err != nil {
		b.Fatal(err)
	}
	waitLeader(b, n)
	if _, err := n.Apply(bootstrapCommand("bench", "peer")); err != nil {
		b.Fatal(err)
	}

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
	)
	b.SetParallelism(32) // 32 appliers per CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		flip := false
		for pb.Next() {
			flip = !flip
			start := time.Now()
			_, err := n.Apply(failover.Command{Kind: failover.CmdSetAppHealth, Node: "peer", AppUnhealthy: flip})
			local = append(local, time.Since(start))
			if err != nil {
				b.Error(err)
				return
			}
		}
		mu.Lock()
		latencies = append(latencies, local...)
		mu.Unlock()
	})
	b.StopTimer()

	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	b.ReportMetric(float64(pct(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(pct(0.99).Microseconds()), "p99-µs")
}

// BenchmarkPing measures one ping between two nodes on loopback, a new
// connection each (as the agents' probes do), with and without the
// cluster-key handshake that authenticates every connection on the raft
// port.
//
//	go test -run '^$' -bench Ping ./raftctl
func BenchmarkPing(b *testing.B) {
	for _, tc := range []struct {
		name    string
		secrets func() [][]byte
	}{
		{"cluster key", secrets(testSecret)},
		{"no key", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var nodes []*Node
			for _, id := range []string{"a", "b"} {
				cfg := testConfig(id, "")
				cfg.InMemory = true
				cfg.ClusterSecrets = tc.secrets
				nodes = append(nodes, startNode(b, cfg))
			}
			ctx := ctxTimeout(b, time.Minute)
			b.ResetTimer()
			for range b.N {
				if err := nodes[0].Ping(ctx, nodes[1].Addr()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
