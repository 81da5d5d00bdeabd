package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// Gray failures (issue 11, item 5; the scenarios Rapid published against
// memberlist): a node that loses most of its packets, or all of one
// direction, for a while. The faulty node may be removed; no healthy node
// may be, and nobody may flap.

// statusWatch polls every observer's /v1/members and records every change
// of each member's committed cluster status (Steward's verdict, replicated
// by raft: /v1/members shows an alive member that this agent merely
// suspects as "suspect", which is counted as alive here) and of its
// gossip_state (memberlist's own view on that observer).
type statusWatch struct {
	mu   sync.Mutex
	last map[string]localcluster.Member // "observer/member" → last entry seen
	// status and gossip list the changes as "observer/member:from>to".
	status, gossip []string
	// failedAt and deadAt are when each "observer/member" was first seen
	// failed (Steward) and dead (memberlist).
	failedAt, deadAt map[string]time.Time
	polls            int
}

// watchStatuses polls observers every 100 ms until ctx ends; the returned
// func waits for the poller to stop.
func watchStatuses(ctx context.Context, observers []*node) (*statusWatch, func()) {
	w := &statusWatch{last: map[string]localcluster.Member{}, failedAt: map[string]time.Time{}, deadAt: map[string]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			for _, o := range observers {
				ms, err := o.MembersByID()
				if err != nil {
					continue // an agent busy or cut off answers later
				}
				w.record(o.ID, ms)
			}
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	return w, func() { <-done }
}

func (w *statusWatch) record(observer string, ms map[string]localcluster.Member) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	for id, m := range ms {
		key := observer + "/" + id
		prev, seen := w.last[key]
		w.last[key] = m
		if !seen {
			continue
		}
		if was, is := committed(prev.Status), committed(m.Status); was != is {
			w.status = append(w.status, fmt.Sprintf("%s:%s>%s", key, was, is))
			if _, ok := w.failedAt[key]; !ok && is == "failed" {
				w.failedAt[key] = time.Now()
			}
		}
		if prev.GossipState != m.GossipState {
			w.gossip = append(w.gossip, fmt.Sprintf("%s:%s>%s", key, prev.GossipState, m.GossipState))
			if _, ok := w.deadAt[key]; !ok && m.GossipState == "dead" {
				w.deadAt[key] = time.Now()
			}
		}
	}
}

// committed is the cluster status behind what /v1/members shows: its
// "suspect" is an alive member this agent suspects.
func committed(status string) string {
	if status == "suspect" {
		return "alive"
	}
	return status
}

// grayOutcome sums up a watch for one faulty member, for Steward (the
// cluster status) and for memberlist alone (gossip_state) side by side.
type grayOutcome struct {
	steward, memberlist grayView
	// stewardDetected and memberlistDetected are, per observer that saw
	// the faulty member go down, how long after the fault began it first
	// did.
	stewardDetected, memberlistDetected []time.Duration
	// statusLog lists the cluster-status changes, for a failure message.
	statusLog []string
}

// grayView is what one layer concluded during a gray failure.
type grayView struct {
	// healthyDown: healthy members some healthy observer saw go to failed
	// (dead for memberlist): wrongly removed.
	healthyDown []string
	// healthyChanges counts the changes about healthy members, all
	// observers together.
	healthyChanges int
	// faultyDowns is how many times the faulty member went to failed
	// (dead), on the observer that saw it most often: more than one is a
	// flap.
	faultyDowns int
	// faultyChanges counts the changes about the faulty member, all
	// observers together.
	faultyChanges int
}

func (w *statusWatch) outcome(faulty string, began time.Time) grayOutcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	return grayOutcome{
		steward:            summarise(w.status, faulty, "failed"),
		memberlist:         summarise(w.gossip, faulty, "dead"),
		stewardDetected:    detectedAfter(w.failedAt, faulty, began),
		memberlistDetected: detectedAfter(w.deadAt, faulty, began),
		statusLog:          append([]string(nil), w.status...),
	}
}

// detectedAfter lists, per observer, how long after began it first saw
// faulty down (first: "observer/member" → when).
func detectedAfter(first map[string]time.Time, faulty string, began time.Time) []time.Duration {
	var out []time.Duration
	for key, at := range first {
		if _, member, _ := strings.Cut(key, "/"); member == faulty {
			out = append(out, at.Sub(began))
		}
	}
	return out
}

// summarise reads changes ("observer/member:from>to") for one faulty
// member; down is the state that means removed.
func summarise(changes []string, faulty, down string) grayView {
	var v grayView
	downs := map[string]int{}
	wrong := map[string]bool{}
	for _, c := range changes {
		key, change, _ := strings.Cut(c, ":")
		observer, member, _ := strings.Cut(key, "/")
		wentDown := strings.HasSuffix(change, ">"+down)
		if member == faulty {
			v.faultyChanges++
			if wentDown {
				downs[observer]++
			}
			continue
		}
		v.healthyChanges++
		if wentDown {
			wrong[member] = true
		}
	}
	for m := range wrong {
		v.healthyDown = append(v.healthyDown, m)
	}
	sort.Strings(v.healthyDown)
	for _, n := range downs {
		v.faultyDowns = max(v.faultyDowns, n)
	}
	return v
}

// grayFault runs one gray failure on victim for d, watched by the healthy
// agents, heals it, and waits until the cluster is whole again: the victim
// back in a new incarnation if it was removed, one table, five voters.
func grayFault(tb testing.TB, nf *netFaults, nodes []*node, victim *node, percent int, dir lossDirection, d time.Duration) grayOutcome {
	tb.Helper()
	healthy := without(nodes, victim)
	leader := healthy[0]
	before := map[string]uint64{victim.ID: incarnationOf(tb, leader, victim.ID)}
	ctx, cancel := context.WithCancel(context.Background())
	w, stopped := watchStatuses(ctx, healthy)
	began := time.Now()
	nf.Loss(victim, percent, dir)
	time.Sleep(d) // the length of the fault
	nf.Heal()
	cancel()
	stopped()
	out := w.outcome(victim.ID, began)

	pollUntil(tb, 60*time.Second, "the cluster whole again after the gray failure", func() error {
		if out.steward.faultyDowns > 0 {
			if err := rejoinedError(nodes, before); err != nil {
				return err
			}
		}
		if _, err := localcluster.SameTableAndLeader(agents(nodes)); err != nil {
			return err
		}
		servers, err := nodes[0].RaftServers()
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		if voters != len(nodes) {
			return fmt.Errorf("%d voters", voters)
		}
		return nil
	})
	return out
}

// grayFaultLength is how long the test's gray failures last: long enough
// for dozens of the local profile's probe rounds, memberlist's suspicion
// timeouts and raft's heartbeat timeouts, in which a flap or a wrong
// removal would show (BenchmarkGrayFailures keeps 30 s per fault).
const grayFaultLength = 20 * time.Second

func TestGrayFailuresRemoveNoHealthyNodeAndNobodyFlaps(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	followers := without(nodes, leader)

	for _, sc := range []struct {
		name    string
		victim  *node
		percent int
		dir     lossDirection
	}{
		{"80 % loss both ways", followers[0], 80, lossBoth},
		{"all incoming lost (it still sends)", followers[1], 100, lossIncoming},
	} {
		out := grayFault(t, nf, nodes, sc.victim, sc.percent, sc.dir, grayFaultLength)
		t.Logf("%s on %s for %s: Steward %+v; memberlist alone %+v", sc.name, sc.victim.ID, grayFaultLength, out.steward, out.memberlist)
		if len(out.steward.healthyDown) > 0 || out.steward.healthyChanges > 0 {
			t.Fatalf("%s: the status of healthy nodes changed: %v", sc.name, out.statusLog)
		}
		if out.steward.faultyDowns > 1 {
			t.Fatalf("%s: %s flapped: failed %d times during the fault; status changes: %v", sc.name, sc.victim.ID, out.steward.faultyDowns, out.statusLog)
		}
	}
}
