package failover

import (
	"encoding/json"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// The million-partition question of issue 17: can one table hold
// 1,048,576 partitions over 1,000 members (plan under 500 ms, under 200 MB
// per agent)? The model caps a table at MaxPartitions (65,536), so the
// table here is built directly, balanced and zone-valid (partition i on
// members 3i, 3i+1 and 3i+2 modulo 1,000, four zones), and sent through the
// same JSON an agent's snapshot uses. Only `go test -bench` runs it; the
// figures and what they mean are in docs/benchmarks.md and docs/scaling.md.

// roundRobinCluster is a converged cluster of members members in four
// zones and partitions partitions with RF 3.
func roundRobinCluster(members, partitions int) *Cluster {
	c := NewCluster()
	c.Bootstrapped = true
	c.Settings = Settings{Partitions: partitions, ReplicationFactor: 3}
	ids := make([]string, members)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%04d", i)
		c.Members[ids[i]] = Member{ID: ids[i], Zone: fmt.Sprintf("z%d", i%4), Status: StatusAlive}
	}
	c.Partitions = make([]Partition, partitions)
	for i := range c.Partitions {
		c.Partitions[i] = Partition{ID: i, Epoch: 1, Primary: ids[(3*i)%members],
			Replicas: []string{ids[(3*i+1)%members], ids[(3*i+2)%members]}}
	}
	return c
}

// heapOf is the live heap that build's result takes.
func heapOf(build func() any) (any, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return v, after.HeapAlloc - before.HeapAlloc
}

// timed is how long fn took: wall-clock, and the CPU time of the thread
// that ran it (locked to it), which other processes on a busy machine do
// not inflate. Garbage collection on other threads is not counted.
type timed struct{ wall, cpu time.Duration }

func (t timed) String() string {
	return fmt.Sprintf("%s CPU (%s wall)", t.cpu.Round(time.Millisecond), t.wall.Round(time.Millisecond))
}

// rusageThread is RUSAGE_THREAD of getrusage(2), which package syscall
// does not name.
const rusageThread = 1

func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(fn func()) timed {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu, start := threadCPU(), time.Now()
	fn()
	return timed{wall: time.Since(start), cpu: threadCPU() - cpu}
}

func BenchmarkPartitionsAtScale(b *testing.B) {
	for _, partitions := range []int{MaxPartitions, 1 << 20} {
		b.Run(fmt.Sprintf("members=1000/partitions=%d", partitions), func(b *testing.B) {
			for b.Loop() {
				built := roundRobinCluster(1000, partitions)
				var snap []byte
				encode := measure(func() {
					var err error
					if snap, err = json.Marshal(built); err != nil {
						b.Fatal(err)
					}
				})
				built = nil
				var decode timed
				v, heap := heapOf(func() any {
					c := NewCluster()
					decode = measure(func() {
						if err := json.Unmarshal(snap, c); err != nil {
							b.Fatal(err)
						}
					})
					return c
				})
				c := v.(*Cluster)
				planConverged := measure(func() {
					if a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 2), Seed: 1, Limits: DefaultLimits()}); len(a) != 0 {
						b.Fatalf("the converged table plans %d actions", len(a))
					}
				})
				var promotions []Action
				planFailure := measure(func() { promotions = PlanFailure(c, "m0500", 1) })
				failed := c.Clone()
				if _, err := failed.Apply(Command{Kind: CmdSetStatus, At: 3, Node: "m0500", Status: StatusFailed, Actions: promotions}); err != nil {
					b.Fatal(err)
				}
				var repairs []Action
				planRepair := measure(func() {
					repairs = Plan(PlanInput{Cluster: failed, Ages: AgesAt(failed, int64(time.Hour)), Seed: 1, Limits: DefaultLimits()})
				})
				var clone *Cluster
				cloneTook := measure(func() { clone = c.Clone() })
				runtime.KeepAlive(clone)
				b.Logf("%d partitions: state %.0f MiB in the heap, snapshot %.1f MiB (encode %s, decode %s), clone %s; converged plan %s; failure plan %s (%d promotions); first repair round %s (%d actions)",
					partitions, float64(heap)/(1<<20), float64(len(snap))/(1<<20), encode, decode,
					cloneTook, planConverged, planFailure, len(promotions), planRepair, len(repairs))
				b.ReportMetric(float64(heap)/(1<<20), "state-MiB")
				b.ReportMetric(float64(len(snap))/(1<<20), "snapshot-MiB")
				b.ReportMetric(planConverged.cpu.Seconds()*1000, "plan-cpu-ms")
				b.ReportMetric(planFailure.cpu.Seconds()*1000, "failure-plan-cpu-ms")
				b.ReportMetric(decode.cpu.Seconds()*1000, "restore-cpu-ms")
			}
		})
	}
}
