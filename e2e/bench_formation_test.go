package e2e

// Issue 17's formation at 50 agents, many times over: how often a cluster
// started all at once fails to settle, and how many healthy peers the
// agents' own detectors fail on the way (each such verdict costs probes
// every few intervals until the peer is taken back, and on the leader a
// removal).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// formationLimit is how long a formation may take before it counts as a
// storm: 50 agents on two cores settle in 2–6 s when they settle at all.
const formationLimit = 60 * time.Second

// BenchmarkFormationStorms starts 50 agents (STEWARD_BENCH_AGENTS; the
// local profile, or STEWARD_BENCH_PROFILE; 1,024 partitions, RF 3) all at
// once, max(b.N, STEWARD_BENCH_TRIALS, 3) times, and reports per build:
// the formations that were not formed and balanced within formationLimit
// (storms), the median time to balanced of the others, the failed
// verdicts of every agent's detector during formation (all of them
// false: no agent is stopped), and the CPU time of all agents up to
// balanced (or the limit).
//
// STEWARD_BENCH_BURN busy processes run beside the agents.
// STEWARD_BENCH_KEEP_LOGS, when set, is a directory: the agents' logs of
// every trial with a failed verdict or a storm are copied under it.
//
// STEWARD_BENCH_BASELINE_AGENT, when set, is an agent binary built from an
// earlier commit; the two builds alternate trial by trial.
func BenchmarkFormationStorms(b *testing.B) {
	n := scaleAgents(b, 50)
	profile := benchProfile(b)
	burnCores(b)
	trials := max(b.N, 3)
	if v := os.Getenv("STEWARD_BENCH_TRIALS"); v != "" {
		t, err := strconv.Atoi(v)
		if err != nil || t < 1 {
			b.Fatalf("STEWARD_BENCH_TRIALS=%q: want a number of trials", v)
		}
		trials = max(trials, t)
	}
	builds := []*formationRuns{{name: "this", bin: agentBin}}
	if base := baselineAgent(b); base != "" {
		builds = append([]*formationRuns{{name: "baseline", bin: base}}, builds...)
	}
	for i := 0; i < trials; i++ {
		for _, build := range builds {
			r := formationTrial(b, build.bin, n, profile, fmt.Sprintf("trial%d-%s", i+1, build.name))
			build.add(r)
			b.Logf("trial %d, %s build: %s", i+1, build.name, r)
		}
	}
	for _, build := range builds {
		b.Logf("%s build, %d agents, %s profile, %d trials: %s", build.name, n, profile, len(build.runs), build.summary())
	}
	b.ReportMetric(0, "ns/op")
	last := builds[len(builds)-1]
	b.ReportMetric(float64(last.storms()), "storms")
	b.ReportMetric(float64(last.medianVerdicts()), "failed-verdicts")
}

// formationResult is one formation.
type formationResult struct {
	// balanced is the time from the first start to a formed, balanced
	// cluster; -1 for a storm.
	balanced time.Duration
	// verdicts counts "verdict=failed" lines over every agent's log, and
	// agents how many agents logged at least one.
	verdicts, agents int
	// quorumLost counts agents that logged a loss of their leader.
	quorumLost int
	// peers counts the failed verdicts per peer.
	peers map[string]int
	// cpu is the CPU time of all agents up to balanced or the limit.
	cpu time.Duration
	// lastErr is what was not yet true for a storm.
	lastErr error
}

func (r formationResult) String() string {
	s := fmt.Sprintf("balanced %s s, %d failed verdicts on %d agents, %d agents lost their leader, %.1f CPU-s",
		secs(r.balanced), r.verdicts, r.agents, r.quorumLost, r.cpu.Seconds())
	if len(r.peers) > 0 {
		s += fmt.Sprintf(", failed peers %v", r.peers)
	}
	if r.lastErr != nil {
		s += fmt.Sprintf(" (STORM: %v)", r.lastErr)
	}
	return s
}

func formationTrial(b *testing.B, bin string, n int, profile, name string) formationResult {
	c := newBenchCluster(b)
	defer c.close()
	start := time.Now()
	nodes := c.startAllOf(bin, n, profile, "-partitions", strconv.Itoa(scalePartitions), "-replication-factor", strconv.Itoa(scaleRF))
	r := formationResult{balanced: -1, peers: map[string]int{}}
	_, err := localcluster.Poll(context.Background(), 250*time.Millisecond, formationLimit, func() error {
		if err := exitedEarly(nodes); err != nil {
			return localcluster.Stop{Err: err}
		}
		leader, err := formed(nodes)
		if err != nil {
			return err
		}
		return balancedTable(nodes, leader, scaleRF)
	})
	if err != nil {
		if exitedEarly(nodes) != nil {
			b.Fatal(err)
		}
		r.lastErr = err
	} else {
		r.balanced = time.Since(start)
	}
	logs := make([]string, len(nodes))
	for i, nd := range nodes {
		t, err := nd.CPUTime()
		if err != nil {
			b.Fatalf("CPU time of %s: %v", nd.ID, err)
		}
		r.cpu += t
		logs[i] = nd.Log()
		r.countVerdicts(logs[i])
	}
	if keep := os.Getenv("STEWARD_BENCH_KEEP_LOGS"); keep != "" && (r.verdicts > 0 || r.lastErr != nil) {
		dir := filepath.Join(keep, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for i, nd := range nodes {
			if err := os.WriteFile(filepath.Join(dir, nd.ID+".log"), []byte(logs[i]), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	return r
}

// countVerdicts adds one agent's log: its failed verdicts, per peer, and
// whether it lost its leader.
func (r *formationResult) countVerdicts(log string) {
	verdicts := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "verdict=failed") {
			continue
		}
		verdicts++
		if _, rest, ok := strings.Cut(line, " peer="); ok {
			peer, _, _ := strings.Cut(rest, " ")
			r.peers[peer]++
		}
	}
	if verdicts > 0 {
		r.verdicts += verdicts
		r.agents++
	}
	if strings.Contains(log, "quorum lost") {
		r.quorumLost++
	}
}

// formationRuns gathers one build's formations.
type formationRuns struct {
	name, bin string
	runs      []formationResult
}

func (f *formationRuns) add(r formationResult) { f.runs = append(f.runs, r) }

func (f *formationRuns) storms() int {
	s := 0
	for _, r := range f.runs {
		if r.balanced < 0 {
			s++
		}
	}
	return s
}

func (f *formationRuns) medianVerdicts() int {
	var v []int
	for _, r := range f.runs {
		v = append(v, r.verdicts)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func (f *formationRuns) summary() string {
	var settled, cpu []time.Duration
	var verdicts []int
	for _, r := range f.runs {
		if r.balanced >= 0 {
			settled = append(settled, r.balanced)
		}
		cpu = append(cpu, r.cpu)
		verdicts = append(verdicts, r.verdicts)
	}
	return fmt.Sprintf("%d storms; balanced (settled ones) %s; failed verdicts median %d, max %d; CPU-s of all agents median %.1f",
		f.storms(), medianWorst(settled), f.medianVerdicts(), slices.Max(verdicts), median(cpu).Seconds())
}

// The formation benchmark counts an agent's failed verdicts per peer from
// its log lines, and the agents that lost their leader.
func TestFormationCountsFailedVerdictsPerPeerFromTheLogs(t *testing.T) {
	r := formationResult{peers: map[string]int{}}
	r.countVerdicts(`2026-11-30T01:52:19.127Z [INFO]  steward: health verdict: node=node9 peer=node31 verdict=failed failures=3
2026-11-30T01:52:19.258Z [INFO]  steward: health verdict: node=node9 peer=node1 verdict=failed failures=3
2026-11-30T01:52:20.000Z [INFO]  steward: health verdict: node=node9 peer=node1 verdict=recovered failures=0
2026-11-30T01:52:21.000Z [WARN]  steward: quorum lost: no leader: node=node9`)
	r.countVerdicts(`2026-11-30T01:52:19.300Z [INFO]  steward: health verdict: node=node10 peer=node1 verdict=failed failures=3`)
	r.countVerdicts(`2026-11-30T01:52:19.300Z [INFO]  steward: agent started: node=node11`)
	if r.verdicts != 3 || r.agents != 2 || r.quorumLost != 1 || r.peers["node1"] != 2 || r.peers["node31"] != 1 || len(r.peers) != 2 {
		t.Fatalf("counted %+v", r)
	}
}
