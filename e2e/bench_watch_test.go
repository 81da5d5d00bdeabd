package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/client"
	"github.com/steward-dev/steward/localcluster"
)

// ---- Issue 15: SIGKILL to every watching client knowing the new primary ----

const (
	// watchClients is how many routers follow the watch stream, and how
	// many pollers read the table every pollEvery, in each trial.
	watchClients = 10
	pollEvery    = time.Second
)

// watchTrial is what one trial measured: per client, when it first had a
// table with a live new primary for every partition the victim led, as
// time since the SIGKILL (-1: not before the deadline).
type watchTrial struct {
	victim string
	led    int
	// committed is when the leader recorded the last of the promotions
	// as applied (its GET /v1/events, same host and clock): the commit.
	committed time.Duration
	// leaderSaw is when the stream of the leader's own agent delivered
	// that table.
	leaderSaw time.Duration
	// routers[i] followed the victim's agent when the trial started for
	// i % len(agents) == 0 (they start at each agent in turn).
	routers []time.Duration
	pollers []time.Duration
	agents  int
}

// promotionsCommitted returns when the leader applied the last promotion
// of the partitions in led after since, from its decision log.
func promotionsCommitted(leader *node, led map[int]uint64, since time.Time) (time.Time, error) {
	var log struct {
		Events []struct {
			Time    time.Time `json:"time"`
			Actions []struct {
				Kind      string `json:"kind"`
				Partition int    `json:"partition"`
			} `json:"actions"`
		} `json:"events"`
	}
	if err := leader.GetJSON("/v1/events", &log); err != nil {
		return time.Time{}, err
	}
	promoted := map[int]time.Time{}
	for _, ev := range log.Events {
		if ev.Time.Before(since) {
			continue
		}
		for _, a := range ev.Actions {
			if _, ok := led[a.Partition]; ok && a.Kind == "promote" {
				if _, seen := promoted[a.Partition]; !seen {
					promoted[a.Partition] = ev.Time
				}
			}
		}
	}
	if len(promoted) != len(led) {
		return time.Time{}, fmt.Errorf("the leader's log has promotions of %d of the %d partitions", len(promoted), len(led))
	}
	var last time.Time
	for _, t := range promoted {
		if t.After(last) {
			last = t
		}
	}
	return last, nil
}

// BenchmarkWatchAfterSIGKILL kills the follower that leads the most
// partitions of a five-agent cluster and measures when each of 10 routers
// following the watch stream (client.Router; two of them were following
// the victim's own agent) and each of 10 clients polling GET
// /v1/partitions every second (from a random phase) holds a table that
// names a new primary for every partition the victim led, from the
// SIGKILL and after the promotions' commit (the leader's record of
// applying the last of them, GET /v1/events).
func BenchmarkWatchAfterSIGKILL(b *testing.B) {
	trials := max(b.N, minTrials)
	var rs []watchTrial
	for i := 0; i < trials; i++ {
		rs = append(rs, watchTrialRun(b))
	}
	b.ReportMetric(0, "ns/op")
	var commit, leader, routers, pollers, routerLag, pollerLag, movedLag []time.Duration
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| trial | victim | partitions it led | commit | leader's stream after commit | routers: median / worst | routers after commit: median / worst | pollers: median / worst | pollers after commit: median / worst |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range rs {
		commit = append(commit, r.committed)
		leader = append(leader, r.leaderSaw-r.committed)
		var rl, pl []time.Duration
		for j, d := range r.routers {
			rl = append(rl, d-r.committed)
			if j%r.agents == 0 {
				movedLag = append(movedLag, d-r.committed)
			}
		}
		for _, d := range r.pollers {
			pl = append(pl, d-r.committed)
		}
		routers, routerLag = append(routers, r.routers...), append(routerLag, rl...)
		pollers, pollerLag = append(pollers, r.pollers...), append(pollerLag, pl...)
		fmt.Fprintf(&tbl, "| %d | %s | %d | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s |\n", i+1, r.victim, r.led, secs(r.committed), msecs(r.leaderSaw-r.committed),
			secs(median(r.routers)), secs(slices.Max(r.routers)), msecs(median(rl)), msecs(slices.Max(rl)),
			secs(median(r.pollers)), secs(slices.Max(r.pollers)), msecs(median(pl)), msecs(slices.Max(pl)))
	}
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"commit", commit}, {"leader-stream-after-commit", leader}, {"routers", routers}, {"routers-after-commit", routerLag}, {"pollers", pollers}, {"pollers-after-commit", pollerLag}} {
		b.ReportMetric(median(m.ds).Seconds(), m.name+"-median-s")
		b.ReportMetric(slices.Max(m.ds).Seconds(), m.name+"-worst-s")
	}
	b.Logf("\n%d trials, %d routers and %d pollers each; seconds from SIGKILL, and ms after the leader recorded the promotions' commit\n"+
		"all trials: commit median %s worst %s; routers median %s worst %s (after commit: median %s worst %s; those that followed the victim's agent: median %s worst %s); pollers median %s worst %s (after commit: median %s worst %s)\n%s",
		len(rs), watchClients, watchClients, secs(median(commit)), secs(slices.Max(commit)),
		secs(median(routers)), secs(slices.Max(routers)), msecs(median(routerLag)), msecs(slices.Max(routerLag)), msecs(median(movedLag)), msecs(slices.Max(movedLag)),
		secs(median(pollers)), secs(slices.Max(pollers)), msecs(median(pollerLag)), msecs(slices.Max(pollerLag)), tbl.String())
}

func msecs(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// newPrimariesFor reports whether t names a live new primary for every
// partition in led (partition -> epoch before the kill).
func newPrimariesFor(t *client.Table, victim string, led map[int]uint64) bool {
	if t == nil {
		return false
	}
	done := 0
	for _, p := range t.Partitions {
		if epoch, ok := led[p.ID]; ok && p.Epoch > epoch && p.Primary != "" && p.Primary != victim {
			done++
		}
	}
	return done == len(led)
}

// rotated is addrs starting at the i-th.
func rotated(addrs []string, i int) []string {
	i %= len(addrs)
	return append(append([]string(nil), addrs[i:]...), addrs[:i]...)
}

func watchTrialRun(b *testing.B) watchTrial {
	c, nodes, leader := startSettled(b, 5, "local", "-partitions", "64")
	defer c.close()
	// Every copy placed and nothing moving: the kill is the only change.
	pollUntil(b, 60*time.Second, "the table settled", func() error { return localcluster.TableSettled(agents(nodes), 3) })
	var pt localcluster.PartitionTable
	pollUntil(b, 30*time.Second, "every agent serves the table", func() (err error) {
		for _, n := range nodes {
			if pt, err = n.Partitions(); err != nil {
				return err
			}
		}
		pt, err = leader.Partitions()
		return err
	})
	count := map[string]int{}
	for _, p := range pt.Partitions {
		count[p.Primary]++
	}
	var victim *node
	for _, n := range nodes {
		if n != leader && (victim == nil || count[n.ID] > count[victim.ID]) {
			victim = n
		}
	}
	led := map[int]uint64{}
	for _, p := range pt.Partitions {
		if p.Primary == victim.ID {
			led[p.ID] = p.Epoch
		}
	}
	// Routers start at each agent in turn, the victim's included.
	var addrs []string
	for _, n := range append([]*node{victim}, without(nodes, victim)...) {
		addrs = append(addrs, n.APIAddr())
	}

	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: deferred calls run last first
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newRouter := func(addrs []string) *client.Router {
		cfg := client.DefaultConfig()
		cfg.Addresses = addrs
		cl, err := client.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		r := client.NewRouter(cl, client.DefaultRouterConfig())
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Run(ctx)
		}()
		return r
	}
	reference := newRouter([]string{leader.APIAddr()})
	routers := make([]*client.Router, watchClients)
	for i := range routers {
		routers[i] = newRouter(rotated(addrs, i))
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 30*time.Second)
	for _, r := range append(routers, reference) {
		if err := r.WaitReady(readyCtx); err != nil {
			b.Fatalf("a router got no table: %v", err)
		}
	}
	readyCancel()

	// Each client records when it first holds the new primaries.
	knew := make([]time.Time, 1+2*watchClients)
	var mu sync.Mutex
	record := func(i int) {
		mu.Lock()
		if knew[i].IsZero() {
			knew[i] = time.Now()
		}
		mu.Unlock()
	}
	deadline, stopWatching := context.WithTimeout(ctx, 30*time.Second)
	defer stopWatching()
	var watchers sync.WaitGroup
	for i, r := range append([]*client.Router{reference}, routers...) {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			for {
				changed := r.Changed()
				if t, _ := r.Table(); newPrimariesFor(t, victim.ID, led) {
					record(i)
					return
				}
				select {
				case <-deadline.Done():
					return
				case <-changed:
				}
			}
		}()
	}
	killedAt := time.Now()
	victim.Kill()
	for i := 0; i < watchClients; i++ {
		cfg := client.DefaultConfig()
		cfg.Addresses = rotated(addrs, i)
		cfg.RequestTimeout = pollEvery
		cl, err := client.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			// A poller started at some moment of its period.
			next := time.NewTimer(rand.N(pollEvery))
			defer next.Stop()
			for {
				select {
				case <-deadline.Done():
					return
				case <-next.C:
				}
				next.Reset(pollEvery)
				t, _, err := cl.Partitions(deadline, client.QueryOptions{})
				if err == nil && newPrimariesFor(&t, victim.ID, led) {
					record(1 + watchClients + i)
					return
				}
			}
		}()
	}
	watchers.Wait()

	r := watchTrial{victim: victim.ID, led: len(led), agents: len(nodes)}
	since := func(t time.Time) time.Duration {
		if t.IsZero() {
			return -1
		}
		return t.Sub(killedAt)
	}
	r.leaderSaw = since(knew[0])
	committedAt, err := promotionsCommitted(leader, led, killedAt)
	if err != nil {
		b.Fatal(err)
	}
	r.committed = since(committedAt)
	for i := 0; i < watchClients; i++ {
		r.routers = append(r.routers, since(knew[1+i]))
		r.pollers = append(r.pollers, since(knew[1+watchClients+i]))
	}
	if r.leaderSaw < 0 || slices.Min(r.routers) < 0 || slices.Min(r.pollers) < 0 {
		b.Fatalf("not every client learnt the new primaries of %s within 30s: leader's stream %s, routers %v, pollers %v",
			victim.ID, secs(r.leaderSaw), formatDurations(r.routers), formatDurations(r.pollers))
	}
	return r
}
