package main

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkReplicatedWrite: three in-process kvapps, each on its own data
// dir, one partition led by n1 with n2 and n3 as replicas; 1 or 16
// clients write distinct 100-byte values to n1. Every write is fsynced on
// all three before its 204: with one client ns/op is the latency of a
// durable, replicated write; with 16 it is the throughput group commit
// gives.
func BenchmarkReplicatedWrite(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) { benchmarkWrites(b, clients) })
	}
}

func benchmarkWrites(b *testing.B, clients int) {
	c := newFakeCluster(b, 1)
	n1 := c.addNode("n1")
	c.addNode("n2")
	c.addNode("n3")
	c.setAll(1, "n1", "n2", "n3")
	c.assignFromTable()
	value := make([]byte, 100)
	var next atomic.Int64
	b.SetParallelism(clients) // goroutines per GOMAXPROCS: run with -cpu 1
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := fmt.Sprintf("k%d", next.Add(1))
			req, _ := http.NewRequest(http.MethodPut, n1.ts.URL+"/kv/"+k, bytes.NewReader(value))
			resp, err := c.client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				b.Errorf("PUT %s: %s", k, resp.Status)
				return
			}
		}
	})
}
