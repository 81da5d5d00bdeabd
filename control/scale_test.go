package control

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
	"github.com/steward-dev/steward/health"
	"github.com/steward-dev/steward/raftctl"
)

// The 1,000-member simulation of issue 17: the leader's controller over the
// fakes (raft as one in-memory state machine, gossip and the detector as
// maps, a clock the test moves), 1,000 members in four zones and 65,536
// partitions with RF 3, no apps (copies complete at once). It runs the
// leader's reconcile rounds through the bootstrap of 990 members and four
// events: ten joins, a failure, the loss of a zone (a quarter of the
// members) and a leave, each until a round applies nothing, then ten idle
// seconds (without apps
// and with no replace delay, a failure's copies are re-created in the same
// rounds), and reports per event the leader's CPU time, the
// rounds and raft entries it took and their encoded sizes (raftctl's
// codec, what the log and every follower store), and the longest plan.
// Only `go test -bench` runs it; the figures are in docs/benchmarks.md.

// scaleMembers, scalePartitions and scaleZones are the simulated cluster;
// scaleBootstrap of the members form it, the others join.
const (
	scaleMembers    = 1000
	scaleBootstrap  = 990
	scalePartitions = failover.MaxPartitions
	scaleZones      = 4
)

// scaleObserver records the plan times of the controller's rounds.
type scaleObserver struct{ longestPlan time.Duration }

func (o *scaleObserver) Applied(time.Duration)             {}
func (o *scaleObserver) MarkedFailed()                     {}
func (o *scaleObserver) Frozen(bool)                       {}
func (o *scaleObserver) Decided(string, []failover.Action) {}
func (o *scaleObserver) Planned(took time.Duration) {
	o.longestPlan = max(o.longestPlan, took)
}

// scaleEvent is what the leader did about one event.
type scaleEvent struct {
	name        string
	rounds      int
	cpu         time.Duration
	entries     int
	bytes       int
	largest     int
	longestPlan time.Duration
}

func memberID(i int) string { return fmt.Sprintf("m%04d", i) }

// scaleNode is gossip's view of simulated member i.
func scaleNode(i int) gossip.Node {
	id := memberID(i)
	return gossip.Node{ID: id, Addr: id + ":7946", State: gossip.StateAlive,
		Meta: gossip.Meta{RaftID: id + "-r", RaftAddr: id + ":7947", Zone: fmt.Sprintf("z%d", i%scaleZones)}}
}

func BenchmarkThousandMembers(b *testing.B) {
	for b.Loop() {
		events, heap := thousandMembers(b)
		for _, e := range events {
			b.Logf("%-28s %4d rounds, leader CPU %8s, %4d entries, %9d bytes (largest %8d), longest plan %s",
				e.name, e.rounds, e.cpu.Round(time.Millisecond), e.entries, e.bytes, e.largest, e.longestPlan.Round(time.Millisecond))
			b.ReportMetric(e.cpu.Seconds(), strings.Fields(e.name)[0]+"-cpu-s")
		}
		b.ReportMetric(float64(heap)/(1<<20), "state-MiB")
	}
}

// thousandMembers runs the four events and returns what the leader did
// about each, and the heap the cluster state takes.
func thousandMembers(b *testing.B) ([]scaleEvent, uint64) {
	self := memberID(0)
	cfg := testConfig(self)
	cfg.Partitions, cfg.ReplicationFactor, cfg.InstantCopies = scalePartitions, 3, true
	cfg.MaxMigrations, cfg.MaxMigrationsPerNode = 4096, 64
	obs := &scaleObserver{}
	fm := &fakeMembers{nodes: map[string]gossip.Node{}}
	det := &fakeDetector{nodes: map[string]health.NodeHealth{}}
	clock := newFakeClock()
	// The first scaleBootstrap members bootstrap the cluster (the table
	// laid out over all of them at once, as -bootstrap-expect does); the
	// others join afterwards.
	state := failover.NewCluster()
	r := newFakeRaft(self+"-r", state)
	for i := 0; i < scaleBootstrap; i++ {
		n := scaleNode(i)
		fm.nodes[n.ID] = n
		if i > 0 {
			det.set(n.ID, health.StateHealthy, time.Time{})
		}
		r.servers = append(r.servers, raftctl.Server{ID: n.Meta.RaftID, Address: n.Meta.RaftAddr, Voter: i < cfg.Voters})
	}
	ctrl := New(cfg, Deps{Raft: r, Members: fm, Detector: det, Clock: clock, Observer: obs})
	ctx := context.Background()

	// settle runs reconcile rounds until one applies nothing, and records
	// what they cost.
	settle := func(name string) scaleEvent {
		e := scaleEvent{name: name}
		obs.longestPlan = 0
		for {
			start := cpuTime()
			if err := ctrl.Reconcile(ctx); err != nil {
				b.Fatalf("%s: reconcile: %v", name, err)
			}
			e.cpu += cpuTime() - start
			e.rounds++
			cmds := r.takeCommands()
			r.takeOps()
			for _, cmd := range cmds {
				data, err := raftctl.EncodeCommand(cmd)
				if err != nil {
					b.Fatal(err)
				}
				e.entries++
				e.bytes += len(data)
				e.largest = max(e.largest, len(data))
			}
			clock.Advance(time.Second)
			if len(cmds) == 0 && e.rounds > 1 {
				break
			}
			if e.rounds > 10000 {
				b.Fatalf("%s: not settled after %d rounds", name, e.rounds)
			}
		}
		e.longestPlan = obs.longestPlan
		if err := r.cluster.Validate(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return e
	}
	var events []scaleEvent
	events = append(events, settle(fmt.Sprintf("bootstrap of %d", scaleBootstrap)))
	for i := scaleBootstrap; i < scaleMembers; i++ {
		n := scaleNode(i)
		fm.nodes[n.ID] = n
		det.set(n.ID, health.StateHealthy, time.Time{})
		// The raft configuration follows through reconcileRaftConfig.
	}
	events = append(events, settle(fmt.Sprintf("joins of %d", scaleMembers-scaleBootstrap)))

	victim := memberID(scaleMembers / 2)
	det.set(victim, health.StateFailed, clock.Now())
	fm.set(victim, gossip.StateDead)
	events = append(events, settle("one failure"))

	clock.Advance(10 * time.Minute) // past the freeze window

	var zone []string
	for i := 1; i < scaleMembers; i++ {
		if i%scaleZones == 3 && memberID(i) != victim {
			zone = append(zone, memberID(i))
		}
	}
	for _, id := range zone {
		det.set(id, health.StateFailed, clock.Now())
		fm.set(id, gossip.StateDead)
	}
	cfg.MaxFailed = len(zone) + 1
	ctrl.cfg.MaxFailed = cfg.MaxFailed
	events = append(events, settle(fmt.Sprintf("loss of a zone (%d)", len(zone))))
	clock.Advance(10 * time.Minute)

	leaver := memberID(scaleMembers/2 + 2)
	snap := r.Snapshot()
	if _, err := r.ApplyForwarded(ctx, failover.Command{Kind: failover.CmdSetStatus, At: clock.Now().UnixNano(), Node: leaver,
		Status: failover.StatusLeaving, Actions: failover.PlanStatus(snap, leaver, failover.StatusLeaving, 1)}); err != nil {
		b.Fatal(err)
	}
	events = append(events, settle("a leave (copies moved off)"))
	if held := holdersOf(r.cluster, leaver); held != 0 {
		b.Fatalf("the leaving member still holds %d copies", held)
	}

	// Ten idle seconds: a round a second, as the leader's loop runs them,
	// with nothing to do. The planner runs on a change of the state and
	// otherwise every IdleReplanEvery.
	idle := scaleEvent{name: "idle for 10 s (10 rounds)"}
	obs.longestPlan = 0
	for range 10 {
		start := cpuTime()
		if err := ctrl.Reconcile(ctx); err != nil {
			b.Fatalf("idle: reconcile: %v", err)
		}
		idle.cpu += cpuTime() - start
		idle.rounds++
		if cmds := r.takeCommands(); len(cmds) != 0 {
			b.Fatalf("an idle round applied %d commands", len(cmds))
		}
		clock.Advance(time.Second)
	}
	idle.longestPlan = obs.longestPlan
	events = append(events, idle)

	return events, heapOfCopy(r)
}

// heapOfCopy is the heap one copy of r's state takes: what every agent
// holds (the leader more while it plans: the planner's copy).
func heapOfCopy(r *fakeRaft) uint64 {
	// Measured with the copy, then without it: anything else that dies
	// meanwhile is collected before the first reading already (measuring
	// before the copy and after it read 0 once the benchmark's own
	// variables died between the two).
	var with, without runtime.MemStats
	kept := r.Snapshot()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&with)
	runtime.KeepAlive(kept)
	kept = nil
	runtime.GC()
	runtime.ReadMemStats(&without)
	if with.HeapAlloc < without.HeapAlloc {
		return 0
	}
	return with.HeapAlloc - without.HeapAlloc
}

func holdersOf(c *failover.Cluster, id string) int {
	n := 0
	for _, p := range c.Partitions {
		if slices.Contains(p.Holders(), id) {
			n++
		}
	}
	return n
}

// cpuTime is the CPU time this process has used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
