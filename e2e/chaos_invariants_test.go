package e2e

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// Invariants of the partition tables that a chaos run checks while it
// runs, on what every agent serves as current (GET /v1/partitions answered
// 200; an agent that has not caught up answers 503 and is not judged):
//   - on any agent, the epoch of a partition never goes down, restarts
//     included;
//   - no two agents (nor one agent at two moments) name different primaries
//     for one partition at one epoch.

// tableWatchInterval is how often each agent's table is read.
const tableWatchInterval = 200 * time.Millisecond

// tableWatcher polls every agent's table and keeps the violations.
type tableWatcher struct {
	h     *history
	nodes []*node

	mu    sync.Mutex
	reads int
	// highest is, per agent and partition, the highest epoch it served.
	highest map[string]map[int]uint64
	// primaryAt is who was named primary of a partition at an epoch, and
	// by which agent first.
	primaryAt  map[partitionEpoch]namedPrimary
	violations []string
	dropped    int // violations beyond the first maxViolations
}

type partitionEpoch struct {
	partition int
	epoch     uint64
}

type namedPrimary struct {
	primary, by string
	at          int64
}

const maxViolations = 50

func newTableWatcher(h *history, nodes []*node) *tableWatcher {
	return &tableWatcher{h: h, nodes: nodes, highest: map[string]map[int]uint64{}, primaryAt: map[partitionEpoch]namedPrimary{}}
}

// run polls until ctx ends; one goroutine per agent, so that a paused
// agent does not delay the reading of the others.
func (w *tableWatcher) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range w.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(tableWatchInterval)
			defer tick.Stop()
			for {
				if pt, err := n.Partitions(); err == nil {
					w.observe(n.ID, pt, w.h.now())
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
}

// observe judges one table served by agent at time at.
func (w *tableWatcher) observe(agent string, pt localcluster.PartitionTable, at int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	high := w.highest[agent]
	if high == nil {
		high = map[int]uint64{}
		w.highest[agent] = high
	}
	for _, p := range pt.Partitions {
		if prev, ok := high[p.ID]; ok && p.Epoch < prev {
			w.violate("%.3f s: %s serves partition %d at epoch %d after it served epoch %d", secondsOf(at), agent, p.ID, p.Epoch, prev)
		}
		high[p.ID] = max(high[p.ID], p.Epoch)
		if p.Primary == "" {
			continue
		}
		key := partitionEpoch{p.ID, p.Epoch}
		if named, ok := w.primaryAt[key]; !ok {
			w.primaryAt[key] = namedPrimary{primary: p.Primary, by: agent, at: at}
		} else if named.primary != p.Primary {
			w.violate("%.3f s: %s names %s primary of partition %d at epoch %d, %s named %s at %.3f s",
				secondsOf(at), agent, p.Primary, p.ID, p.Epoch, named.by, named.primary, secondsOf(named.at))
		}
	}
}

func (w *tableWatcher) violate(format string, args ...any) {
	if len(w.violations) >= maxViolations {
		w.dropped++
		return
	}
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
}

// report returns the violations (and how many more there were) and how
// many tables were read.
func (w *tableWatcher) report() (violations []string, more, reads int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...), w.dropped, w.reads
}

func secondsOf(ns int64) float64 { return time.Duration(ns).Seconds() }

// converged says why the cluster of nodes has not converged yet, or nil:
// every agent is ready and names the same leader and serves the same
// table; every partition has a primary and rf copies, with no migration in
// flight and every webhook delivered; every agent sees every node as a
// registered, alive member with a healthy app; the raft configuration has
// voters voters.
func converged(nodes []*node, rf, voters int) error {
	for _, n := range nodes {
		var st struct {
			Ready    bool   `json:"ready"`
			NotReady string `json:"not_ready"`
		}
		if err := n.GetJSON("/v1/status", &st); err != nil {
			return err
		}
		if !st.Ready {
			return fmt.Errorf("%s is not ready: %s", n.ID, st.NotReady)
		}
	}
	if _, err := localcluster.SameTableAndLeader(agents(nodes)); err != nil {
		return err
	}
	if err := localcluster.TableSettled(agents(nodes), rf); err != nil {
		return err
	}
	for _, n := range nodes {
		ms, err := n.MembersByID()
		if err != nil {
			return err
		}
		for _, o := range nodes {
			m, ok := ms[o.ID]
			if !ok || !m.Registered || m.Status != "alive" || m.GossipState != "alive" {
				return fmt.Errorf("%s sees %s as %+v", n.ID, o.ID, m)
			}
		}
	}
	var r struct {
		Members []struct {
			ID         string `json:"id"`
			AppHealthy bool   `json:"app_healthy"`
		} `json:"members"`
	}
	if err := nodes[0].GetJSON("/v1/members", &r); err != nil {
		return err
	}
	for _, m := range r.Members {
		if !m.AppHealthy {
			return fmt.Errorf("%s's app is not healthy", m.ID)
		}
	}
	servers, err := nodes[0].RaftServers()
	if err != nil {
		return err
	}
	n := 0
	for _, s := range servers {
		if s.Voter {
			n++
		}
	}
	if n != voters {
		return fmt.Errorf("%d voters, want %d: %+v", n, voters, servers)
	}
	return nil
}
