package localcluster

import (
	"encoding/base64"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
)

// TestGossipKey is a fixed gossip encryption key for clusters whose key is
// not a secret (tests, benchmarks).
var TestGossipKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

// Agent is one agent process of a built cmd/agent binary and its settings:
// Start runs `agent run` with them, again after a Kill or Stop (a restart
// keeps ID, ports and data dir). Its log is DataDir+".log".
type Agent struct {
	Process

	// Bin is the agent binary.
	Bin string
	// ID is its -node-id.
	ID string
	// DataDir is its -data-dir, created for the placement's uid on start.
	DataDir string
	// Placement is where it runs: -bind is its address.
	Placement
	// GossipPort, RaftPort and HTTPPort are free ports chosen by NewAgent.
	GossipPort, RaftPort, HTTPPort int
	// GossipKey is its -encrypt key.
	GossipKey string
	// Profile is its -profile, and LogLevel its -log-level; empty leaves
	// the agent's default.
	Profile, LogLevel string
	// Args are flags given at every start, before the start's own.
	Args []string

	// supMu guards sup, the restart-on-exit (see Supervise).
	supMu sync.Mutex
	sup   *supervision
}

// NewAgent declares an agent with fresh ports (see FreePort); it is not
// started.
func NewAgent(bin, id, dataDir string, pl Placement, args ...string) (*Agent, error) {
	a := &Agent{Bin: bin, ID: id, DataDir: dataDir, Placement: pl, GossipKey: TestGossipKey, Args: args}
	for _, port := range []*int{&a.GossipPort, &a.RaftPort, &a.HTTPPort} {
		var err error
		if *port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// GossipAddr is the address other agents -join.
func (a *Agent) GossipAddr() string { return net.JoinHostPort(a.host(), strconv.Itoa(a.GossipPort)) }

// APIAddr is the address of its HTTP API.
func (a *Agent) APIAddr() string { return net.JoinHostPort(a.host(), strconv.Itoa(a.HTTPPort)) }

// Start runs `agent run` with the agent's settings, then Args, then args.
func (a *Agent) Start(args ...string) error {
	all := []string{"run",
		"-node-id", a.ID, "-data-dir", a.DataDir, "-bind", a.host(),
		"-gossip-port", strconv.Itoa(a.GossipPort), "-raft-port", strconv.Itoa(a.RaftPort),
		"-http-addr", a.APIAddr(), "-encrypt", a.GossipKey,
	}
	if a.Profile != "" {
		all = append(all, "-profile", a.Profile)
	}
	if a.LogLevel != "" {
		all = append(all, "-log-level", a.LogLevel)
	}
	all = append(all, a.Args...)
	all = append(all, args...)
	cmd := exec.Command(a.Bin, all...)
	a.RunAs(cmd)
	if a.UID != 0 {
		// Created (again, after a test wiped it) for the node's uid: the
		// agent could not create it in a test's private temp dir.
		if err := a.OwnDir(a.DataDir); err != nil {
			return err
		}
	}
	if err := a.start(a.ID, cmd, a.DataDir+".log"); err != nil {
		return fmt.Errorf("start %s: %w", a.ID, err)
	}
	return nil
}
