package e2e

// Benchmarks of the real agent binary: cluster formation, failure detection
// per profile and false removals under short pauses. They run only under
// `go test -bench` (plain `go test` never calls a Benchmark function); the
// commands and figures are in docs/benchmarks.md.
//
// The harness of harness_test.go takes a *testing.T; a benchmark has a
// *testing.B, so this file has its own small testing.TB versions of the
// pieces that call Fatal (free ports, starting an agent) and reuses the node
// type and its methods (kill, signal, getJSON, status, raftServers, log).

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// benchPoll is how often the benchmarks poll the agents' APIs: the
// resolution of every time they report.
const benchPoll = 20 * time.Millisecond

// newBenchCluster is newCluster for a benchmark trial: close kills its
// agents at the end of a trial, the Cleanup whatever a failed trial left.
func newBenchCluster(tb testing.TB) *cluster { return newCluster(tb) }

// startBench starts n as a benchmark runs agents: with the given profile
// and info-level logs.
func startBench(n *node, profile string, args ...string) {
	n.Profile, n.LogLevel = profile, "info"
	n.start(args...)
}

// startAll declares and starts n agents with -bootstrap-expect n, all
// joining the first, and returns them without waiting for anything.
func (c *cluster) startAll(n int, profile string, extra ...string) []*node {
	return c.startAllOf(agentBin, n, profile, extra...)
}

// startAllOf is startAll with the agent binary bin (an earlier build, to
// compare two in one run).
func (c *cluster) startAllOf(bin string, n int, profile string, extra ...string) []*node {
	var nodes []*node
	for i := 1; i <= n; i++ {
		nd := c.add(fmt.Sprintf("node%d", i), extra...)
		nd.Bin = bin
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		startBench(nd, profile, "-bootstrap-expect", strconv.Itoa(n), "-join", nodes[0].GossipAddr())
	}
	return nodes
}

// errPortTaken is returned by formedOrPortTaken when an agent could not bind
// a port freePort chose: another process (the machine is shared) took it
// between the check and the agent's bind.
var errPortTaken = errors.New("e2e: an agent's port was taken before it could bind it")

// exitedEarly returns errPortTaken if an agent has exited because a port was
// in use, another error if one exited for another reason, and nil if all
// are running.
func exitedEarly(nodes []*node) error {
	for _, n := range nodes {
		select {
		case <-n.Exited():
			if strings.Contains(n.Log(), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("%s exited: %s", n.ID, n.Tail(3))
		default:
		}
	}
	return nil
}

// startSettled starts a cluster of n agents and waits until it is settled
// (n registered, alive voters, one leader). A start that lost a port race is retried on
// fresh ports, up to three times. It returns the cluster, its nodes and the
// leader.
func startSettled(tb testing.TB, n int, profile string, extra ...string) (*cluster, []*node, *node) {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		c := newBenchCluster(tb)
		nodes := c.startAll(n, profile, extra...)
		var leader *node
		_, err := localcluster.Poll(context.Background(), benchPoll, 60*time.Second, func() error {
			if err := exitedEarly(nodes); err != nil {
				return localcluster.Stop{Err: err}
			}
			var err error
			leader, err = settled(nodes, votersOf(n))
			return err
		})
		if err == nil {
			return c, nodes, leader
		}
		c.close()
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			tb.Fatalf("%d agents (%s) alive voters with one leader: %v", n, profile, err)
		}
		tb.Logf("attempt %d: %v; again on fresh ports", attempt, err)
	}
}

// votersOf is how many voters a cluster of n agents started together has
// with the default -voters 5: the largest odd number not above n, at most 5
// (control.PlanVoters' target; the bootstrap makes the others non-voters).
func votersOf(n int) int {
	v := min(n, 5)
	if v%2 == 0 {
		v--
	}
	return v
}

// pollUntil polls cond every benchPoll until it returns nil and returns the
// time that took, the resolution of the figures; it fails tb on timeout.
func pollUntil(tb testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	tb.Helper()
	return localcluster.EventuallyEvery(tb, benchPoll, timeout, what, cond)
}

// settled is localcluster.Settled for nodes: it returns the leader once
// the cluster is settled.
func settled(nodes []*node, wantVoters int) (*node, error) {
	leader, err := localcluster.Settled(agents(nodes), wantVoters)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.Agent == leader {
			return n, nil
		}
	}
	return nil, fmt.Errorf("leader %s is none of the nodes", leader.ID)
}

// ---- Cluster formation ----

func BenchmarkFormCluster3(b *testing.B) { benchFormCluster(b, 3) }
func BenchmarkFormCluster7(b *testing.B) { benchFormCluster(b, 7) }

// benchFormCluster times, b.N times, a fresh cluster of n agents (local
// profile, default 256 partitions, replication factor 3) from the first
// process start to every agent naming one leader and serving one identical
// partition table.
func benchFormCluster(b *testing.B, n int) {
	var times []time.Duration
	for i, attempt := 0, 1; i < b.N; {
		c := newBenchCluster(b)
		start := time.Now()
		nodes := c.startAll(n, "local")
		_, err := localcluster.Poll(context.Background(), benchPoll, 60*time.Second, func() error {
			if err := exitedEarly(nodes); err != nil {
				return localcluster.Stop{Err: err}
			}
			_, err := localcluster.SameTableAndLeader(agents(nodes))
			return err
		})
		took := time.Since(start)
		c.close()
		switch {
		case errors.Is(err, errPortTaken) && attempt < 3:
			b.Logf("%v; again on fresh ports", err)
			attempt++
			continue
		case err != nil:
			b.Fatalf("one leader and one table on all %d agents: %v", n, err)
		}
		times = append(times, took)
		i, attempt = i+1, 1
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(median(times).Seconds(), "median-s")
	b.ReportMetric(slices.Max(times).Seconds(), "worst-s")
	b.Logf("form %d agents, %d trials: %s", n, len(times), formatDurations(times))
}

// ---- Failure detection ----

// minTrials is the number of trials per profile the issue asks for; a run
// does max(b.N, minTrials).
const minTrials = 5

// detection is what one trial measured, each as time since the SIGKILL, or
// -1 if not seen before the trial's deadline.
type detection struct {
	victim string
	// failed: every survivor's /v1/members lists the victim as "failed".
	failed time.Duration
	// removed: no survivor's /v1/raft lists the victim.
	removed time.Duration
	// gossipDead: every survivor's memberlist (gossip_state) says "dead".
	gossipDead time.Duration
	// firstSuspect: the first survivor lists the victim as not alive
	// (suspect, by gossip or by its own probes); leaderSuspect: the leader
	// does, which is when the only agent that acts starts to confirm.
	firstSuspect, leaderSuspect time.Duration
}

// profileTiming bounds a trial per profile: memberlist's suspicion timeout
// grows with its probe interval (1 s LAN, 5 s WAN).
var profileTiming = map[string]time.Duration{
	"local": 30 * time.Second,
	"lan":   60 * time.Second,
	"wan":   180 * time.Second,
}

// BenchmarkFailureDetection SIGKILLs one follower of a fresh 5-agent cluster
// per trial and times three things on the four survivors: Steward's verdict
// (status "failed" everywhere), the removal from the raft configuration, and
// memberlist's own "dead" (gossip_state) in the same run. wan only runs with
// STEWARD_BENCH_WAN=1: its suspicion timeout alone is 30 s a trial.
// STEWARD_BENCH_BURN=N runs N busy processes beside the agents;
// STEWARD_BENCH_KILL=leader kills the leader instead of a follower.
func BenchmarkFailureDetection(b *testing.B) {
	for _, profile := range []string{"local", "lan", "wan"} {
		b.Run(profile, func(b *testing.B) {
			if profile == "wan" && os.Getenv("STEWARD_BENCH_WAN") != "1" {
				b.Skip("wan takes several minutes (memberlist's WAN suspicion timeout is 30 s); set STEWARD_BENCH_WAN=1")
			}
			if n := burnCores(b); n > 0 {
				b.Logf("%d busy processes beside the agents (STEWARD_BENCH_BURN)", n)
			}
			trials := max(b.N, minTrials)
			var results []detection
			for i := 0; i < trials; i++ {
				results = append(results, detectionTrial(b, profile))
			}
			reportDetection(b, profile, results)
		})
	}
}

// baselineAgent is STEWARD_BENCH_BASELINE_AGENT, an agent binary built
// from an earlier commit (go build -o /tmp/agent-before ./cmd/agent in a
// checkout of it) that a benchmark runs beside this tree's, so that before
// and after are measured in the same run; "" when it is not set.
func baselineAgent(b *testing.B) string {
	base := os.Getenv("STEWARD_BENCH_BASELINE_AGENT")
	if base == "" {
		return ""
	}
	if _, err := os.Stat(base); err != nil {
		b.Fatalf("STEWARD_BENCH_BASELINE_AGENT: %v", err)
	}
	return base
}

// killLeader is STEWARD_BENCH_KILL=leader: BenchmarkFailureDetection then
// kills the leader rather than a follower, which adds raft's election to
// the verdict (a follower's death needs none).
func killLeader(b *testing.B) bool {
	switch v := os.Getenv("STEWARD_BENCH_KILL"); v {
	case "", "follower":
		return false
	case "leader":
		return true
	default:
		b.Fatalf("STEWARD_BENCH_KILL=%q: want follower or leader", v)
		return false
	}
}

// detectionTrial forms a fresh cluster of five, waits until it is settled,
// SIGKILLs a random follower and polls every survivor until all three events
// are seen on all of them.
func detectionTrial(b *testing.B, profile string) detection {
	c, nodes, leader := startSettled(b, 5, profile, "-partitions", "32")
	defer c.close()
	followers := without(nodes, leader)
	victim := followers[rand.IntN(len(followers))]
	if killLeader(b) {
		victim = leader
	}
	survivors := without(nodes, victim)

	ctx, cancel := context.WithTimeout(context.Background(), profileTiming[profile])
	defer cancel()
	killedAt := time.Now()
	victim.Kill()
	obs := make([]survivorSeen, len(survivors))
	var wg sync.WaitGroup
	for i, s := range survivors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obs[i] = watchVictim(ctx, s, victim.ID, killedAt)
		}()
	}
	wg.Wait()
	d := detection{victim: victim.ID}
	d.failed = latest(obs, func(o survivorSeen) time.Duration { return o.failed })
	d.removed = latest(obs, func(o survivorSeen) time.Duration { return o.removed })
	d.gossipDead = latest(obs, func(o survivorSeen) time.Duration { return o.gossipDead })
	d.firstSuspect, d.leaderSuspect = -1, -1
	for i, o := range obs {
		if o.suspect >= 0 && (d.firstSuspect < 0 || o.suspect < d.firstSuspect) {
			d.firstSuspect = o.suspect
		}
		if survivors[i] == leader {
			d.leaderSuspect = o.suspect
		}
	}
	for i, o := range obs {
		if o.unlisted != "" {
			b.Logf("%s, victim %s: %s's raft configuration lacked it before listing it, at %s", profile, victim.ID, survivors[i].ID, o.unlisted)
		}
	}
	if d.failed < 0 || d.removed < 0 || d.gossipDead < 0 {
		for i, s := range survivors {
			b.Logf("%s: %+v (last: %s)", s.ID, obs[i], obs[i].last)
		}
		b.Errorf("%s, victim %s: not every event seen within %s: %+v", profile, victim.ID, profileTiming[profile], d)
	}
	return d
}

// survivorSeen is when one survivor first showed each event (-1: never).
type survivorSeen struct {
	failed, removed, gossipDead time.Duration
	// suspect is when the survivor first listed the victim as anything but
	// alive.
	suspect time.Duration
	// last is the victim's last entry seen, to explain a missing event.
	last string
	// sawListed: the victim was seen in this survivor's raft configuration
	// after the kill; only then does its absence count as a removal.
	sawListed bool
	// unlisted describes a raft configuration that lacked the victim before
	// it had been seen in one.
	unlisted string
}

// watchVictim polls one survivor's /v1/members and /v1/raft every benchPoll
// until it has seen the victim failed, dead in gossip and out of raft, or ctx
// ends. Each is recorded the first time it is seen: "failed" is final in the
// cluster model, "dead" stays in gossip for GossipToTheDeadTime (15 s local,
// 30 s lan, 60 s wan), and a removed server is not added back.
func watchVictim(ctx context.Context, s *node, victim string, since time.Time) survivorSeen {
	o := survivorSeen{failed: -1, removed: -1, gossipDead: -1, suspect: -1}
	tick := time.NewTicker(benchPoll)
	defer tick.Stop()
	for {
		if ms, err := s.MembersByID(); err == nil {
			m := ms[victim]
			o.last = fmt.Sprintf("%+v", m)
			if o.suspect < 0 && m.Status != "alive" {
				o.suspect = time.Since(since)
			}
			if o.failed < 0 && m.Status == "failed" {
				o.failed = time.Since(since)
			}
			if o.gossipDead < 0 && m.GossipState == "dead" {
				o.gossipDead = time.Since(since)
			}
		}
		if o.removed < 0 {
			if servers, err := s.RaftServers(); err == nil {
				listed := false
				for _, srv := range servers {
					listed = listed || srv.NodeID == victim
				}
				switch {
				case listed:
					o.sawListed = true
				case o.sawListed:
					o.removed = time.Since(since)
				case o.unlisted == "":
					// Not listed at the first look after the kill: not a
					// removal (none is that fast), something to report.
					o.unlisted = fmt.Sprintf("%.2fs: %+v", time.Since(since).Seconds(), servers)
				}
			}
		}
		if o.failed >= 0 && o.removed >= 0 && o.gossipDead >= 0 {
			return o
		}
		select {
		case <-ctx.Done():
			return o
		case <-tick.C:
		}
	}
}

// latest is the time by which every survivor had seen an event, or -1 if
// one never did.
func latest(obs []survivorSeen, field func(survivorSeen) time.Duration) time.Duration {
	var worst time.Duration
	for _, o := range obs {
		d := field(o)
		if d < 0 {
			return -1
		}
		worst = max(worst, d)
	}
	return worst
}

// reportDetection reports median and worst of each event as metrics and
// logs a summary, then a table of the trials (use -v: without it, go test
// keeps only the first lines of a benchmark's log).
func reportDetection(b *testing.B, profile string, results []detection) {
	b.ReportMetric(0, "ns/op")
	var failed, removed, dead, firstSuspect, leaderSuspect []time.Duration
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| trial | victim | first suspect | leader suspects | failed everywhere | out of raft | memberlist dead everywhere |\n")
	fmt.Fprintf(&tbl, "|---|---|---|---|---|---|---|\n")
	for i, r := range results {
		fmt.Fprintf(&tbl, "| %d | %s | %s | %s | %s | %s | %s |\n", i+1, r.victim, secs(r.firstSuspect), secs(r.leaderSuspect),
			secs(r.failed), secs(r.removed), secs(r.gossipDead))
		if r.firstSuspect >= 0 {
			firstSuspect = append(firstSuspect, r.firstSuspect)
		}
		if r.leaderSuspect >= 0 {
			leaderSuspect = append(leaderSuspect, r.leaderSuspect)
		}
		if r.failed >= 0 {
			failed = append(failed, r.failed)
		}
		if r.removed >= 0 {
			removed = append(removed, r.removed)
		}
		if r.gossipDead >= 0 {
			dead = append(dead, r.gossipDead)
		}
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "profile %s, %d trials, seconds from SIGKILL of a follower until the last survivor shows it:\n", profile, len(results))
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"failed", failed}, {"removed", removed}, {"gossip-dead", dead}, {"first-suspect", firstSuspect}, {"leader-suspect", leaderSuspect}} {
		if len(m.ds) == 0 {
			fmt.Fprintf(&sum, "%s: never seen\n", m.name)
			continue
		}
		b.ReportMetric(median(m.ds).Seconds(), m.name+"-median-s")
		b.ReportMetric(slices.Max(m.ds).Seconds(), m.name+"-worst-s")
		fmt.Fprintf(&sum, "%s: median %s, worst %s (%d of %d trials)\n", m.name,
			secs(median(m.ds)), secs(slices.Max(m.ds)), len(m.ds), len(results))
	}
	// The goal compares Steward with memberlist in the same run: count the
	// trials in which the verdict came first, not only the medians.
	earlier := 0
	for _, r := range results {
		if r.failed >= 0 && (r.gossipDead < 0 || r.failed < r.gossipDead) {
			earlier++
		}
	}
	b.ReportMetric(float64(earlier), "failed-before-dead-trials")
	fmt.Fprintf(&sum, "failed everywhere before memberlist's dead everywhere in %d of %d trials\n", earlier, len(results))
	b.Log("\n" + sum.String() + tbl.String())
}

// ---- Pauses ----

// pauseCount and pauseLength are the goal: no removal in 20 pauses
// of 400 ms.
const (
	pauseCount  = 20
	pauseLength = 400 * time.Millisecond
)

// BenchmarkPauses SIGSTOPs a random follower of a 5-agent cluster
// (STEWARD_BENCH_AGENTS) for
// 400 ms, SIGCONTs it and waits until every agent lists it alive again (or
// failed: a false removal), 20 times, and reports how many members were
// marked failed ("member failed" in the agents' logs) and how many pauses
// drew a suspicion; once with the local profile, once with lan.
func BenchmarkPauses(b *testing.B) {
	for _, profile := range []string{"local", "lan"} {
		b.Run(profile, func(b *testing.B) {
			if n := burnCores(b); n > 0 {
				b.Logf("%d busy processes beside the agents (STEWARD_BENCH_BURN)", n)
			}
			var total pauseResult
			for i := 0; i < b.N; i++ {
				r := pausesRun(b, profile)
				total.removals += r.removals
				total.suspected += r.suspected
				total.recoveries = append(total.recoveries, r.recoveries...)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(b.N*pauseCount), "pauses")
			b.ReportMetric(float64(total.removals), "removals")
			b.ReportMetric(float64(total.suspected), "suspected-pauses")
			b.ReportMetric(median(total.recoveries).Seconds(), "alive-again-median-s")
			b.ReportMetric(slices.Max(total.recoveries).Seconds(), "alive-again-worst-s")
		})
	}
}

// pauseResult is what one cluster's 20 pauses gave.
type pauseResult struct {
	// removals counts "member failed" lines in the agents' logs.
	removals int
	// suspected counts pauses after which the victim was seen suspect.
	suspected int
	// recoveries are the times from SIGCONT to alive on every agent.
	recoveries []time.Duration
}

func pausesRun(b *testing.B, profile string) pauseResult {
	c, nodes, _ := startSettled(b, scaleAgents(b, 5), profile, "-partitions", "32")
	defer c.close()
	falseVerdicts, suspected := 0, 0
	var recoveries []time.Duration
	failedOnes := map[string]bool{}
	for p := 0; p < pauseCount; p++ {
		// Leadership could move if a pause disturbed raft: ask every time.
		st, err := nodes[0].Status()
		if err != nil {
			b.Fatal(err)
		}
		var candidates []*node
		for _, n := range nodes {
			if n.ID != st.LeaderID && !failedOnes[n.ID] {
				candidates = append(candidates, n)
			}
		}
		victim := candidates[rand.IntN(len(candidates))]
		victim.Signal(syscall.SIGSTOP)
		time.Sleep(pauseLength) // the pause itself, not a synchronisation
		victim.Signal(syscall.SIGCONT)
		resumed := time.Now()
		sawSuspect, sawFailed := false, false
		// Back to alive on every agent (its own view included), or failed
		// somewhere: then it will not come back by itself within a pause
		// budget, and it is counted and no longer paused.
		pollUntil(b, 30*time.Second, victim.ID+" alive everywhere after the pause", func() error {
			notAlive := ""
			for _, n := range nodes {
				ms, err := n.MembersByID()
				if err != nil {
					return err
				}
				m := ms[victim.ID]
				sawSuspect = sawSuspect || m.Status == "suspect" || m.GossipState == "suspect"
				if m.Status == "failed" {
					sawFailed = true
					return nil
				}
				if m.Status != "alive" || m.GossipState != "alive" {
					notAlive = fmt.Sprintf("%s sees %s as %+v", n.ID, victim.ID, m)
				}
			}
			if notAlive != "" {
				return fmt.Errorf("%s", notAlive)
			}
			return nil
		})
		recoveries = append(recoveries, time.Since(resumed))
		if sawSuspect {
			suspected++
		}
		if sawFailed {
			falseVerdicts++
			failedOnes[victim.ID] = true
			b.Logf("pause %d: %s was marked failed", p+1, victim.ID)
		}
	}
	// The leader logs "member failed" once per verdict it applies; counting
	// log lines also catches a verdict the polling above missed.
	logged := 0
	for _, n := range nodes {
		logged += strings.Count(n.Log(), "member failed")
	}
	b.Logf("%d pauses of %s: %d members marked failed (log lines %d), %d pauses seen as suspect, alive again after SIGCONT: %s",
		pauseCount, pauseLength, falseVerdicts, logged, suspected, formatDurations(recoveries))
	return pauseResult{removals: logged, suspected: suspected, recoveries: recoveries}
}

// ---- small helpers ----

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return strconv.FormatFloat(math.Round(d.Seconds()*100)/100, 'f', 2, 64)
}

func formatDurations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = secs(d)
	}
	return strings.Join(parts, " ") + " s"
}
