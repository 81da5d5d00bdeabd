package agent_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/steward-dev/steward/agent"
)

// One agent inside this process: a cluster of one on loopback, with free
// ports and a temporary data dir.
func Example() {
	dir, err := os.MkdirTemp("", "steward-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cfg := agent.DefaultConfig()
	cfg.NodeID = "example"
	cfg.DataDir = dir
	cfg.GossipPort = 0 // 0: a free port
	cfg.RaftPort = 0
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.BootstrapExpect = 1 // form a cluster of one
	cfg.Partitions = 16
	cfg.Profile = "local"
	cfg.Insecure = true // no gossip key: loopback only

	a, err := agent.New(cfg, nil) // nil: no logs
	if err != nil {
		log.Fatal(err)
	}
	if err := a.Start(); err != nil {
		log.Fatal(err)
	}
	defer a.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}
	st := a.Status()
	fmt.Printf("node %s: %d partitions, ready %v\n", st.NodeID, st.Partitions, st.Ready)
	// Output: node example: 16 partitions, ready true
}
