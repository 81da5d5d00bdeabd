package raftctl

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A disk that refuses writes (remounted read-only, full, failing) must stop
// this server from serving as if its state were current, say so, and let it
// resume once writes succeed again; never crash it. raft itself copes with
// a failed log write (a leader steps down, a follower refuses the entries),
// but panics when it cannot save its term ("failed to save current term")
// from its own goroutine, where nothing can recover it.
//
// storeGuard sits between raft and raft.db. Every write's outcome sets or
// clears the store's failure, which Node.StorageError reports (the agent
// is then not ready, with the reason). A failed write to the stable store
// (term and vote) is retried, with backoff, until it succeeds: raft waits
// in it instead of panicking, and sends nothing meanwhile, since it has not
// yet got past saving the term or vote it would act on. While failing, a
// probe write every storageProbeInterval notices the disk coming back even
// if raft writes nothing. If the node shuts down while a stable write is
// still failing, the guard closes the transport first, so that nothing raft
// does after that write can reach a peer, and only then lets raft go on (and
// stop): on disk, and for every peer, the last term and vote are the ones
// saved before the failure.

// storageProbeInterval is how often a failing store is probed for writes.
const storageProbeInterval = time.Second

// storageRetryMax bounds the backoff between retries of a stable write.
const storageRetryMax = 2 * time.Second

// storageProbeKey is the stable-store key the probe writes; raft never
// reads it.
var storageProbeKey = []byte("StewardWriteProbe")

type storeGuard struct {
	path   string
	logger hclog.Logger
	stop   <-chan struct{}
	// isolate closes the transport: called once before a stable write that
	// never succeeded is reported done to a raft that is shutting down.
	isolate func()
	// fault, when set, fails writes before they reach the store (tests).
	fault func() error

	mu      sync.Mutex
	failing error     // the last write's error; nil after a success
	op      string    // what that write was
	since   time.Time // when the current run of failures began
	gaveUp  bool      // a stable write was abandoned at shutdown
}

func newStoreGuard(path string, logger hclog.Logger, stop <-chan struct{}, fault func() error) *storeGuard {
	return &storeGuard{path: path, logger: logger, stop: stop, fault: fault}
}

// Err says why the store is failing, or nil.
func (g *storeGuard) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.failing == nil {
		return nil
	}
	return fmt.Errorf("raftctl: cannot write %s (%s) since %s (%s ago): %w; raft is stalled until the disk takes writes again (read-only, full or failing?)",
		g.path, g.op, g.since.Format(time.RFC3339), time.Since(g.since).Round(time.Second), g.failing)
}

// abandoned reports whether a stable write was given up at shutdown: raft
// then believes in a term or vote that is not on disk.
func (g *storeGuard) abandoned() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gaveUp
}

// write runs one write to the store and records its outcome.
func (g *storeGuard) write(op string, do func() error) error {
	err := func() error {
		if g.fault != nil {
			if err := g.fault(); err != nil {
				return err
			}
		}
		return do()
	}()
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err != nil && g.failing == nil:
		g.failing, g.op, g.since = err, op, time.Now()
		g.logger.Error("cannot write raft's store; this agent is not ready until it can", "file", g.path, "op", op, "error", err)
	case err != nil:
		g.failing, g.op = err, op
	case g.failing != nil:
		g.logger.Info("raft's store takes writes again", "file", g.path, "failed_for", time.Since(g.since).Round(time.Millisecond).String())
		g.failing = nil
	}
	return err
}

// writeUntilDone retries a stable write until it succeeds or the node
// shuts down (see storeGuard).
func (g *storeGuard) writeUntilDone(op string, do func() error) error {
	delay := 50 * time.Millisecond
	for {
		if g.write(op, do) == nil {
			return nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-g.stop:
			timer.Stop()
			g.mu.Lock()
			first := !g.gaveUp
			g.gaveUp = true
			g.mu.Unlock()
			if first && g.isolate != nil {
				g.isolate()
			}
			return nil
		}
		delay = min(2*delay, storageRetryMax)
	}
}

// probeLoop writes a probe key while the store is failing, so that its
// recovery is noticed even when raft has nothing to write. It ends at stop.
func (g *storeGuard) probeLoop(stable raft.StableStore) {
	tick := time.NewTicker(storageProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-tick.C:
		}
		if g.Err() == nil {
			continue
		}
		g.write("probe", func() error {
			return stable.SetUint64(storageProbeKey, uint64(time.Now().UnixNano()))
		})
	}
}

// guardedLogStore is raft's LogStore with writes watched by the guard.
type guardedLogStore struct {
	raft.LogStore
	guard *storeGuard
}

func (s guardedLogStore) StoreLog(l *raft.Log) error {
	return s.guard.write("store log", func() error { return s.LogStore.StoreLog(l) })
}

func (s guardedLogStore) StoreLogs(logs []*raft.Log) error {
	return s.guard.write("store logs", func() error { return s.LogStore.StoreLogs(logs) })
}

func (s guardedLogStore) DeleteRange(min, max uint64) error {
	return s.guard.write("delete logs", func() error { return s.LogStore.DeleteRange(min, max) })
}

// guardedStableStore is raft's StableStore whose writes wait for the disk
// instead of failing (see storeGuard).
type guardedStableStore struct {
	raft.StableStore
	guard *storeGuard
}

func (s guardedStableStore) Set(key, val []byte) error {
	return s.guard.writeUntilDone("save "+string(key), func() error { return s.StableStore.Set(key, val) })
}

func (s guardedStableStore) SetUint64(key []byte, val uint64) error {
	return s.guard.writeUntilDone("save "+string(key), func() error { return s.StableStore.SetUint64(key, val) })
}
