package main

import (
	"context"
	"testing"
	"time"

	"github.com/steward-dev/steward/agent"
)

// startSoloAgent starts a real agent of one node ("solo", 4 partitions,
// local profile, plain HTTP on a free port) for the client sub-commands to
// talk to, with adjust applied to its config first, and waits until it is
// ready. The test's cleanup shuts it down.
func startSoloAgent(t *testing.T, adjust func(*agent.Config)) *agent.Agent {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.NodeID = "solo"
	cfg.DataDir = t.TempDir()
	cfg.GossipPort, cfg.RaftPort, cfg.HTTPAddr = 0, 0, "127.0.0.1:0"
	cfg.BootstrapExpect = 1
	cfg.Partitions = 4
	cfg.Profile = "local"
	cfg.Insecure = true
	if adjust != nil {
		adjust(&cfg)
	}
	a, err := agent.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}
