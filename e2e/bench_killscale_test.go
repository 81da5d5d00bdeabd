package e2e

// Issue 17 at 50 agents: after a SIGKILL, how soon every survivor stops
// naming the dead agent as a primary, next to the leader's commit of the
// promotions.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/client"
)

// scaleAgents is STEWARD_BENCH_AGENTS, or def.
func scaleAgents(b *testing.B, def int) int {
	v := os.Getenv("STEWARD_BENCH_AGENTS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 3 {
		b.Fatalf("STEWARD_BENCH_AGENTS=%q: want a number of agents, at least 3", v)
	}
	return n
}

// BenchmarkKillAtScale: per trial a fresh cluster of 50 agents
// (STEWARD_BENCH_AGENTS; local profile, 1,024 partitions, RF 3, no apps),
// formed and balanced; every survivor's own table is followed with a
// blocking query; the follower that leads the most partitions is
// SIGKILLed. It reports, from the SIGKILL, when the leader's own table
// first named a new primary for every partition the victim led (the
// leader applies an entry once it is committed: this is the commit, seen
// by the leader's agent), when each other survivor's table first did, and
// that lag after the commit.
func BenchmarkKillAtScale(b *testing.B) {
	n := scaleAgents(b, 50)
	trials := max(b.N, 3)
	var commits, worstLags, medLags []time.Duration
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| trial | victim | partitions it led | commit | survivors clear: median / worst | after commit: median / worst |\n|---|---|---|---|---|---|\n")
	for i := 0; i < trials; i++ {
		r := killAtScaleTrial(b, n)
		var lags []time.Duration
		for _, d := range r.clear {
			lags = append(lags, d-r.committed)
		}
		commits = append(commits, r.committed)
		worstLags, medLags = append(worstLags, slices.Max(lags)), append(medLags, median(lags))
		fmt.Fprintf(&tbl, "| %d | %s | %d | %s | %s / %s | %s / %s |\n", i+1, r.victim, r.led, secs(r.committed),
			secs(median(r.clear)), secs(slices.Max(r.clear)), msecs(median(lags)), msecs(slices.Max(lags)))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(commits).Seconds(), "commit-median-s")
	b.ReportMetric(median(medLags).Seconds(), "clear-after-commit-median-s")
	b.ReportMetric(slices.Max(worstLags).Seconds(), "clear-after-commit-worst-s")
	b.Logf("\n%d agents, %d trials; seconds from SIGKILL, and ms after the leader's own table had the new primaries (the commit):\n%s", n, trials, tbl.String())
}

type killScaleTrial struct {
	victim    string
	led       int
	committed time.Duration
	// clear[i] is when the i-th survivor other than the leader first
	// named the victim primary of nothing.
	clear []time.Duration
}

func killAtScaleTrial(b *testing.B, n int) killScaleTrial {
	c := newBenchCluster(b)
	defer c.close()
	nodes, leader := startBalanced(b, c, agentBin, n)
	pt, err := leader.Partitions()
	if err != nil {
		b.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range pt.Partitions {
		count[p.Primary]++
	}
	var victim *node
	for _, nd := range without(nodes, leader) {
		if victim == nil || count[nd.ID] > count[victim.ID] {
			victim = nd
		}
	}
	led := map[int]uint64{}
	for _, p := range pt.Partitions {
		if p.Primary == victim.ID {
			led[p.ID] = p.Epoch
		}
	}
	survivors := without(nodes, victim)

	// Each survivor's table, followed with blocking queries from its
	// current index: a survivor is clear once its table names a primary
	// other than the victim for every partition the victim led.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clearAt := make([]time.Time, len(survivors))
	var ready, done sync.WaitGroup
	for i, s := range survivors {
		cfg := client.DefaultConfig()
		cfg.Addresses = []string{s.APIAddr()}
		cl, err := client.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			var index uint64
			first := true
			for ctx.Err() == nil {
				t, meta, err := cl.Partitions(ctx, client.QueryOptions{WaitIndex: index, Wait: 30 * time.Second})
				if first {
					ready.Done()
					first = false
				}
				if err != nil {
					continue // the deadline ends it; an agent's 503 is retried
				}
				if newPrimariesFor(&t, victim.ID, led) {
					clearAt[i] = time.Now()
					return
				}
				index = meta.Index
			}
		}()
	}
	ready.Wait()
	killed := time.Now()
	victim.Kill()
	done.Wait()
	r := killScaleTrial{victim: victim.ID, led: len(led)}
	for i, at := range clearAt {
		if at.IsZero() {
			b.Fatalf("%s still named %s primary 60 s after the SIGKILL", survivors[i].ID, victim.ID)
		}
		if survivors[i] == leader {
			r.committed = at.Sub(killed)
			continue
		}
		r.clear = append(r.clear, at.Sub(killed))
	}
	return r
}
