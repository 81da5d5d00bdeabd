package e2e

// Benchmarks of a larger cluster of real agents on one machine: formation
// to a balanced table, and the CPU every agent uses while nothing happens.
// They run only under `go test -bench` (the figures and commands are in
// docs/benchmarks.md); 50 agents never run in the default CI run.

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// scalePartitions and scaleRF are the table of the 50-agent
// figures: 1,024 partitions, replication factor 3.
const (
	scalePartitions = 1024
	scaleRF         = 3
)

// idleWindow is how long the CPU of an idle cluster is measured, and
// idleQuiet how long the cluster is left alone before (no API polls, the
// table balanced), so that the start-up work is not counted.
const (
	idleWindow = 30 * time.Second
	idleQuiet  = 10 * time.Second
)

// BenchmarkIdleCPU starts 10, 25 and 50 agents (local profile, or
// STEWARD_BENCH_PROFILE; 1,024 partitions, RF 3), times formation to a balanced table, leaves the
// cluster alone, then reads every agent's CPU time (utime + stime from
// /proc) over idleWindow: the leader's share of a core next to the median
// and the busiest other agent's, and the context switches a second of the
// leader and the median agent (each one a wake-up, or a thread that gave
// up its CPU).
//
// STEWARD_BENCH_BASELINE_AGENT, when set, is an agent binary built from an
// earlier commit (go build -o /tmp/agent-before ./cmd/agent in a checkout
// of it): each size then runs it first and this tree's agent second, so
// that before and after are measured in the same run, on the same load.
func BenchmarkIdleCPU(b *testing.B) {
	builds := []struct{ name, bin string }{{"this", agentBin}}
	if base := baselineAgent(b); base != "" {
		builds = append([]struct{ name, bin string }{{"baseline", base}}, builds...)
	}
	for _, n := range []int{10, 25, 50} {
		for _, build := range builds {
			b.Run(fmt.Sprintf("agents=%d/build=%s", n, build.name), func(b *testing.B) {
				var leaders, medians, maxOthers, medianSwitches []float64
				var formed []time.Duration
				for i := 0; i < b.N; i++ {
					r := idleTrial(b, build.bin, n)
					leaders, medians, maxOthers = append(leaders, r.leader), append(medians, r.median), append(maxOthers, r.maxOther)
					medianSwitches = append(medianSwitches, r.medianSwitches)
					formed = append(formed, r.balanced)
					b.Logf("%d agents, %s build: balanced %s s after start; idle CPU over %s: leader %.1f%% (%.2f s), median %.1f%%, busiest other %.1f%% of a core; all %d agents %.2f CPU-s; context switches a second: leader %.0f, median %.0f",
						n, build.name, secs(r.balanced), idleWindow, r.leader, r.leader*idleWindow.Seconds()/100, r.median, r.maxOther, n, r.total.Seconds(), r.leaderSwitches, r.medianSwitches)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(slices.Max(leaders), "leader-%core")
				b.ReportMetric(slices.Max(medians), "median-%core")
				b.ReportMetric(slices.Max(maxOthers), "max-other-%core")
				b.ReportMetric(median(formed).Seconds(), "balanced-s")
				b.ReportMetric(slices.Max(medianSwitches), "median-switches/s")
			})
		}
	}
}

// idleResult is one idle trial: shares of one core, context switches a
// second (an idle agent's CPU is mostly the cost of its wake-ups), and the
// time from the first process start to a balanced table.
type idleResult struct {
	leader, median, maxOther       float64
	leaderSwitches, medianSwitches float64
	balanced                       time.Duration
	// total is the CPU time of all agents over the window.
	total time.Duration
}

func idleTrial(b *testing.B, bin string, n int) idleResult {
	c := newBenchCluster(b)
	defer c.close()
	start := time.Now()
	nodes, leader := startBalanced(b, c, bin, n, benchProfile(b))
	balanced := time.Since(start)
	// Not a synchronisation: the quiet period and the window are the
	// measurement itself, time during which nothing may be asked of the
	// agents.
	time.Sleep(idleQuiet)
	before, switchesBefore := cpuTimes(b, nodes), contextSwitches(b, nodes)
	time.Sleep(idleWindow)
	after, switchesAfter := cpuTimes(b, nodes), contextSwitches(b, nodes)
	if err := exitedEarly(nodes); err != nil {
		b.Fatal(err)
	}
	var others, otherSwitches []float64
	var r idleResult
	for i, nd := range nodes {
		r.total += after[i] - before[i]
		share := 100 * (after[i] - before[i]).Seconds() / idleWindow.Seconds()
		switches := float64(switchesAfter[i]-switchesBefore[i]) / idleWindow.Seconds()
		if nd == leader {
			r.leader, r.leaderSwitches = share, switches
			continue
		}
		others, otherSwitches = append(others, share), append(otherSwitches, switches)
	}
	slices.Sort(others)
	slices.Sort(otherSwitches)
	r.median, r.maxOther = others[len(others)/2], others[len(others)-1]
	r.medianSwitches = otherSwitches[len(otherSwitches)/2]
	r.balanced = balanced
	return r
}

// startBalanced starts n agents of bin (local profile, the scale table)
// and waits for a formed, balanced cluster; it returns them and the
// leader.
func startBalanced(b *testing.B, c *cluster, bin string, n int, profile string) ([]*node, *node) {
	nodes := c.startAllOf(bin, n, profile, "-partitions", strconv.Itoa(scalePartitions), "-replication-factor", strconv.Itoa(scaleRF))
	var leader *node
	// Polled every 250 ms, and mostly the leader only: 50 agents each
	// listing 50 members every 20 ms would be most of what the machine
	// does. A momentary suspicion on a busy machine does not count against
	// formation: every member registered and in service is.
	poll := 250 * time.Millisecond
	localcluster.EventuallyEvery(b, poll, 180*time.Second, "a formed, balanced cluster", func() error {
		if err := exitedEarly(nodes); err != nil {
			return localcluster.Stop{Err: err}
		}
		l, err := formed(nodes)
		if err != nil {
			return err
		}
		leader = l
		return balancedTable(nodes, leader, scaleRF)
	})
	return nodes, leader
}

// cpuTimes reads the CPU time of every node's process.
func cpuTimes(b *testing.B, nodes []*node) []time.Duration {
	out := make([]time.Duration, len(nodes))
	for i, nd := range nodes {
		t, err := nd.CPUTime()
		if err != nil {
			b.Fatalf("CPU time of %s: %v", nd.ID, err)
		}
		out[i] = t
	}
	return out
}

// contextSwitches reads every agent's context switches so far.
func contextSwitches(b *testing.B, nodes []*node) []int64 {
	out := make([]int64, len(nodes))
	for i, nd := range nodes {
		n, err := nd.ContextSwitches()
		if err != nil {
			b.Fatalf("context switches of %s: %v", nd.ID, err)
		}
		out[i] = n
	}
	return out
}

// formed returns the leader once every agent names the same one and the
// leader lists every agent as a registered member in service (alive or
// suspect).
func formed(nodes []*node) (*node, error) {
	var leader *node
	for _, nd := range nodes {
		st, err := nd.Status()
		if err != nil {
			return nil, err
		}
		if st.LeaderID == "" || (leader != nil && st.LeaderID != leader.ID) {
			return nil, fmt.Errorf("%s names leader %q", nd.ID, st.LeaderID)
		}
		if leader == nil {
			for _, l := range nodes {
				if l.ID == st.LeaderID {
					leader = l
				}
			}
			if leader == nil {
				return nil, fmt.Errorf("leader %q is none of the agents", st.LeaderID)
			}
		}
	}
	ms, err := leader.MembersByID()
	if err != nil {
		return nil, err
	}
	for _, nd := range nodes {
		if m := ms[nd.ID]; !m.Registered || (m.Status != "alive" && m.Status != "suspect") {
			return nil, fmt.Errorf("the leader sees %s as %+v", nd.ID, m)
		}
	}
	return leader, nil
}

// balancedTable holds when the leader's table is settled (a primary and
// rf copies everywhere, nothing in flight) and every agent holds its share
// of the copies and of the primaries, within one (equal weights, one
// zone).
func balancedTable(nodes []*node, leader *node, rf int) error {
	if err := localcluster.TableSettled([]*localcluster.Agent{leader.Agent}, rf); err != nil {
		return err
	}
	pt, err := leader.Partitions()
	if err != nil {
		return err
	}
	copies, prims := map[string]int{}, map[string]int{}
	for _, p := range pt.Partitions {
		prims[p.Primary]++
		copies[p.Primary]++
		for _, r := range p.Replicas {
			copies[r]++
		}
	}
	n := len(nodes)
	for _, nd := range nodes {
		if err := withinShare("copies", nd.ID, copies[nd.ID], len(pt.Partitions)*rf, n); err != nil {
			return err
		}
		if err := withinShare("primaries", nd.ID, prims[nd.ID], len(pt.Partitions), n); err != nil {
			return err
		}
	}
	return nil
}

// withinShare checks that got lies in [floor(total/n), ceil(total/n)].
func withinShare(what, id string, got, total, n int) error {
	lo, hi := total/n, (total+n-1)/n
	if got < lo || got > hi {
		return fmt.Errorf("%s holds %d %s, its share is %d-%d", id, got, what, lo, hi)
	}
	return nil
}
