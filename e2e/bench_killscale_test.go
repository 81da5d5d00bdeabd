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

// benchProfile is STEWARD_BENCH_PROFILE (local, lan or wan), or local.
func benchProfile(b *testing.B) string {
	switch v := os.Getenv("STEWARD_BENCH_PROFILE"); v {
	case "":
		return "local"
	case "local", "lan", "wan":
		return v
	default:
		b.Fatalf("STEWARD_BENCH_PROFILE=%q: want local, lan or wan", v)
		return ""
	}
}

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
// (STEWARD_BENCH_AGENTS; the local profile, or STEWARD_BENCH_PROFILE;
// 1,024 partitions, RF 3, no apps; STEWARD_BENCH_BURN busy processes
// beside them),
// formed and balanced; the follower that leads the most partitions is
// SIGKILLed. The leader's table is followed with blocking queries to
// learn the state index I at which it first names a new primary for every
// partition the victim led. Every survivor, the leader included, is
// followed with blocking queries of its small member list, which carry
// its state index: it names the new primaries once its index reaches I
// (every agent applies the same log, so equal indexes are equal states),
// and the leader's own moment is the commit (it applies an entry once it
// is committed). Following each survivor's whole
// table instead made 49 agents encode, and the benchmark decode, 1,024
// partitions on every change, which delayed what it measured by seconds
// on two cores. It reports the commit from the SIGKILL, and each
// survivor's lag after it; from the same member lists, when every survivor
// listed the victim failed; and the false removals of the whole run: the
// "member failed" lines of every agent's log but the victim's verdict,
// formation included.
//
// STEWARD_BENCH_BASELINE_AGENT, when set, is an agent binary built from an
// earlier commit: each trial then runs it and this tree's agent one after
// the other, so that before and after share the machine's moods.
// STEWARD_BENCH_VICTIM=nonvoter kills the non-voter that leads the most
// partitions instead (the leader's heartbeats to non-voters are thinned,
// raftctl/thin.go).
func BenchmarkKillAtScale(b *testing.B) {
	n := scaleAgents(b, 50)
	profile := benchProfile(b)
	nonvoterVictim := false
	switch v := os.Getenv("STEWARD_BENCH_VICTIM"); v {
	case "", "follower":
	case "nonvoter":
		nonvoterVictim = true
	default:
		b.Fatalf("STEWARD_BENCH_VICTIM=%q: want follower or nonvoter", v)
	}
	burning := burnCores(b)
	trials := max(b.N, 3)
	builds := []*killScaleRuns{{name: "this", bin: agentBin}}
	if base := baselineAgent(b); base != "" {
		builds = append([]*killScaleRuns{{name: "baseline", bin: base}}, builds...)
	}
	for i := 0; i < trials; i++ {
		for _, build := range builds {
			build.add(i+1, killAtScaleTrial(b, build.bin, n, profile, nonvoterVictim))
		}
	}
	b.ReportMetric(0, "ns/op")
	for _, build := range builds {
		suffix := ""
		if build.name != "this" {
			suffix = "-" + build.name
		}
		b.ReportMetric(median(build.failed).Seconds(), "failed-everywhere-median-s"+suffix)
		b.ReportMetric(float64(build.falseRemovals), "false-removals"+suffix)
		b.ReportMetric(median(build.commits).Seconds(), "commit-median-s"+suffix)
		b.ReportMetric(median(build.medLags).Seconds(), "clear-after-commit-median-s"+suffix)
		b.ReportMetric(slices.Max(build.worstLags).Seconds(), "clear-after-commit-worst-s"+suffix)
		b.Logf("\n%d agents, profile %s, %s build, %d busy processes beside them, %d trials; seconds from SIGKILL, and ms after the leader's own state reached the promotions (the commit):\n%s", n, profile, build.name, burning, trials, build.tbl.String())
	}
}

// killScaleRuns are one build's trials.
type killScaleRuns struct {
	name, bin                           string
	commits, worstLags, medLags, failed []time.Duration
	falseRemovals                       int
	tbl                                 strings.Builder
}

func (k *killScaleRuns) add(trial int, r killScaleTrial) {
	if k.tbl.Len() == 0 {
		fmt.Fprintf(&k.tbl, "| trial | victim | partitions it led | failed everywhere | false removals | commit | survivors clear: median / worst | after commit: median / worst | the last survivor |\n|---|---|---|---|---|---|---|---|---|\n")
	}
	k.failed = append(k.failed, r.failedEverywhere)
	k.falseRemovals += r.falseRemovals
	var lags []time.Duration
	for _, d := range r.clear {
		lags = append(lags, d-r.committed)
	}
	k.commits = append(k.commits, r.committed)
	k.worstLags, k.medLags = append(k.worstLags, slices.Max(lags)), append(k.medLags, median(lags))
	fmt.Fprintf(&k.tbl, "| %d | %s | %d | %s | %d | %s | %s / %s | %s / %s | %s |\n", trial, r.victim, r.led, secs(r.failedEverywhere), r.falseRemovals, secs(r.committed),
		secs(median(r.clear)), secs(slices.Max(r.clear)), msecs(median(lags)), msecs(slices.Max(lags)), r.last)
}

type killScaleTrial struct {
	victim    string
	led       int
	committed time.Duration
	// failedEverywhere is when the last survivor listed the victim failed
	// (-1: one never did before it reached the promotions).
	failedEverywhere time.Duration
	// falseRemovals counts the "member failed" lines of every agent's
	// log beyond the victim's one verdict.
	falseRemovals int
	// clear[i] is when the i-th survivor other than the leader first
	// named the victim primary of nothing.
	clear []time.Duration
	// last names the survivor that named it last, and its raft role.
	last string
}

func killAtScaleTrial(b *testing.B, bin string, n int, profile string, nonvoterVictim bool) killScaleTrial {
	c := newBenchCluster(b)
	defer c.close()
	nodes, leader := startBalanced(b, c, bin, n, profile)
	pt, err := leader.Partitions()
	if err != nil {
		b.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range pt.Partitions {
		count[p.Primary]++
	}
	voter := map[string]bool{}
	servers, err := leader.RaftServers()
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range servers {
		voter[s.NodeID] = s.Voter
	}
	var victim *node
	for _, nd := range without(nodes, leader) {
		if nonvoterVictim && voter[nd.ID] {
			continue
		}
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

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type seen struct {
		at    time.Time
		index uint64
	}
	// indexes[i] are survivor i's state indexes as they changed;
	// failedAt[i] is when it first listed the victim failed.
	indexes := make([][]seen, len(survivors))
	failedAt := make([]time.Time, len(survivors))
	var mu sync.Mutex // guards committedIndex until done
	var committedIndex uint64
	reached := func(index uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return committedIndex != 0 && index >= committedIndex
	}
	// follow runs a blocking query loop on agent a until ctx ends or
	// step says it is done.
	var ready, done sync.WaitGroup
	follow := func(a *node, step func(cl *client.Client, q client.QueryOptions) (uint64, bool)) {
		cfg := client.DefaultConfig()
		cfg.Addresses = []string{a.APIAddr()}
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
				next, stop := step(cl, client.QueryOptions{WaitIndex: index, Wait: 30 * time.Second})
				if first {
					ready.Done()
					first = false
				}
				if stop {
					return
				}
				if next != 0 {
					index = next
				}
			}
		}()
	}
	// The leader's table tells the index of the promotions.
	follow(leader, func(cl *client.Client, q client.QueryOptions) (uint64, bool) {
		t, meta, err := cl.Partitions(ctx, q)
		if err != nil {
			return 0, false // the deadline ends it; a 503 is retried
		}
		if newPrimariesFor(&t, victim.ID, led) {
			mu.Lock()
			committedIndex = meta.Index
			mu.Unlock()
			return 0, true
		}
		return meta.Index, false
	})
	// Every survivor's state index, the leader's included, as it changes.
	for i, s := range survivors {
		follow(s, func(cl *client.Client, q client.QueryOptions) (uint64, bool) {
			ms, meta, err := cl.Members(ctx, q)
			now := time.Now()
			if err != nil {
				return 0, false
			}
			indexes[i] = append(indexes[i], seen{now, meta.Index})
			for _, m := range ms {
				if m.ID == victim.ID && m.Status == "failed" && failedAt[i].IsZero() {
					failedAt[i] = now
				}
			}
			return meta.Index, reached(meta.Index)
		})
	}
	ready.Wait()
	killed := time.Now()
	victim.Kill()
	done.Wait()
	if committedIndex == 0 {
		b.Fatalf("the leader's table named no new primary for %s's partitions within 60 s", victim.ID)
	}
	// clearAt is when survivor i's state index reached the promotions'.
	clearAt := func(i int) time.Duration {
		for _, x := range indexes[i] {
			if x.index >= committedIndex {
				return x.at.Sub(killed)
			}
		}
		b.Fatalf("%s did not reach state index %d (the promotions) within 60 s of the SIGKILL", survivors[i].ID, committedIndex)
		return 0
	}
	r := killScaleTrial{victim: victim.ID, led: len(led)}
	for _, at := range failedAt {
		if at.IsZero() {
			r.failedEverywhere = -1
			break
		}
		r.failedEverywhere = max(r.failedEverywhere, at.Sub(killed))
	}
	logged := 0
	for _, nd := range nodes {
		logged += strings.Count(nd.Log(), "member failed")
	}
	r.falseRemovals = max(logged-1, 0)
	var lastAt time.Duration
	for i, s := range survivors {
		at := clearAt(i)
		if s == leader {
			r.committed = at
			continue
		}
		r.clear = append(r.clear, at)
		if at > lastAt {
			lastAt, r.last = at, s.ID
			if voter[s.ID] {
				r.last += " (voter)"
			}
		}
	}
	return r
}
