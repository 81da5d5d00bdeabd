package e2e

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The faults of a chaos run, one at a time: what each does to which nodes
// and for how long is drawn from the run's seed before the run starts, so
// that a seed names a schedule. Only "which node is the leader" is learnt
// when the fault is injected.

// faultKind names a kind of fault; -chaos.faults takes these names.
type faultKind string

const (
	// faultKillNode SIGKILLs a node's agent and app together, as a machine
	// loss does, and starts both again on the same data dirs after Hold.
	faultKillNode faultKind = "kill-node"
	// faultKillApp SIGKILLs only the app, and starts it again after Hold;
	// its agent keeps running.
	faultKillApp faultKind = "kill-app"
	// faultPauseAgent SIGSTOPs an agent for 300 ms, shorter than failure
	// detection: nobody should be removed.
	faultPauseAgent faultKind = "pause-agent"
	// faultPauseAgentLong SIGSTOPs an agent for 5 s, long enough to be
	// failed; its app keeps running.
	faultPauseAgentLong faultKind = "pause-agent-long"
	// faultPauseLeader SIGSTOPs the raft leader's agent for 5 s.
	faultPauseLeader faultKind = "pause-leader"
	// faultLeave SIGTERMs an agent (a graceful leave) and starts it again
	// after Hold; its app keeps running.
	faultLeave faultKind = "leave"
	// faultCutOne cuts one node (agent and app) off from the others for
	// Hold, then heals the network; nothing is restarted.
	faultCutOne faultKind = "cut-one"
	// faultCutTwo cuts two nodes off from the other three (the two still
	// reach each other) for Hold, then heals.
	faultCutTwo faultKind = "cut-two"
	// faultSplit splits, through one node's agent (agent split), the
	// lowest-numbered partition that node leads (any led one if it leads
	// none), while the clients write: its keys stop taking writes until the
	// children take over.
	faultSplit faultKind = "split"
)

// allFaults are every kind a chaos run knows.
var allFaults = []faultKind{faultKillNode, faultKillApp, faultPauseAgent, faultPauseAgentLong, faultPauseLeader, faultLeave, faultCutOne, faultCutTwo, faultSplit}

// fault is one planned fault.
type fault struct {
	Kind faultKind
	// Victims are indexes into the run's nodes; pause-leader picks its
	// victim when it is injected.
	Victims []int
	// Hold is how long the fault lasts: the pause, or the time a killed
	// or departed process stays down.
	Hold time.Duration
	// Settle is how long the clients keep going on the converged cluster
	// before the next fault.
	Settle time.Duration
}

func (f fault) String() string {
	victims := "the leader"
	if len(f.Victims) > 0 {
		var names []string
		for _, v := range f.Victims {
			names = append(names, fmt.Sprintf("node%d", v+1))
		}
		victims = strings.Join(names, "+")
	}
	return fmt.Sprintf("%s of %s for %s", f.Kind, victims, f.Hold.Round(time.Millisecond))
}

// parseFaultKinds reads -chaos.faults: a comma-separated list of kinds, or
// "all".
func parseFaultKinds(s string) ([]faultKind, error) {
	if s == "" || s == "all" {
		return allFaults, nil
	}
	var out []faultKind
	for _, name := range strings.Split(s, ",") {
		k := faultKind(strings.TrimSpace(name))
		if !slices.Contains(allFaults, k) {
			return nil, fmt.Errorf("unknown fault kind %q; known: %v", k, allFaults)
		}
		out = append(out, k)
	}
	return out, nil
}

// planFaults draws count faults over nodes nodes from rng: rounds in which
// every kind comes once, in a random order, so that a run long enough for
// one round has tried every kind.
func planFaults(rng *rand.Rand, kinds []faultKind, nodes, count int) []fault {
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var plan []fault
	for len(plan) < count {
		round := slices.Clone(kinds)
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		for _, k := range round {
			f := fault{Kind: k, Settle: between(2*time.Second, 5*time.Second)}
			switch k {
			case faultKillNode:
				// Down from a quick restart, while the failover is still
				// being decided, to well after it.
				f.Victims, f.Hold = []int{rng.IntN(nodes)}, between(500*time.Millisecond, 8*time.Second)
			case faultKillApp:
				f.Victims, f.Hold = []int{rng.IntN(nodes)}, between(200*time.Millisecond, 5*time.Second)
			case faultPauseAgent:
				f.Victims, f.Hold = []int{rng.IntN(nodes)}, 300*time.Millisecond
			case faultPauseAgentLong:
				f.Victims, f.Hold = []int{rng.IntN(nodes)}, 5*time.Second
			case faultPauseLeader:
				f.Hold = 5 * time.Second
			case faultLeave:
				f.Victims, f.Hold = []int{rng.IntN(nodes)}, between(time.Second, 5*time.Second)
			case faultCutOne:
				f.Victims, f.Hold = []int{rng.IntN(nodes)}, between(10*time.Second, 20*time.Second)
			case faultCutTwo:
				f.Victims, f.Hold = rng.Perm(nodes)[:2], between(10*time.Second, 20*time.Second)
			case faultSplit:
				f.Victims = []int{rng.IntN(nodes)}
			}
			plan = append(plan, f)
		}
	}
	return plan[:count]
}

// inject runs one fault from injection to repair (the processes restarted,
// resumed or reconnected) and returns its record; convergence is the
// caller's to wait for.
func (r *chaosRun) inject(t *testing.T, f fault) faultRecord {
	t.Helper()
	var victims []*appNode
	for _, v := range f.Victims {
		victims = append(victims, r.nodes[v])
	}
	if f.Kind == faultPauseLeader {
		leader, err := r.leader()
		if err != nil {
			t.Fatalf("pause-leader: %v", err)
		}
		victims = []*appNode{leader}
	}
	rec := faultRecord{Kind: f.Kind, Detail: f.String(), Start: r.history.now()}
	for _, v := range victims {
		rec.Nodes = append(rec.Nodes, v.ID)
	}
	switch f.Kind {
	case faultKillNode:
		victims[0].killNode()
		time.Sleep(f.Hold)
		r.restartApp(victims[0])
		r.restartAgent(victims[0])
	case faultKillApp:
		victims[0].app.Kill()
		time.Sleep(f.Hold)
		r.restartApp(victims[0])
	case faultPauseAgent, faultPauseAgentLong, faultPauseLeader:
		victims[0].Signal(syscall.SIGSTOP)
		time.Sleep(f.Hold)
		victims[0].Signal(syscall.SIGCONT)
	case faultLeave:
		// A graceful leave moves the node's partitions away first; it is
		// bounded by the agent's -leave-timeout (30 s).
		if err := victims[0].Stop(60 * time.Second); err != nil {
			r.failf("leave of %s: %v", victims[0].ID, err)
		}
		time.Sleep(f.Hold)
		r.restartAgent(victims[0])
	case faultCutOne, faultCutTwo:
		r.net.Isolate(plainNodes(victims)...)
		time.Sleep(f.Hold)
		r.net.Heal()
	case faultSplit:
		rec.Detail += r.split(victims[0])
	default:
		t.Fatalf("fault kind %q has no injection", f.Kind)
	}
	rec.End = r.history.now()
	return rec
}

// restartAgent starts a node's agent again on its data dir, joining
// through every other node (whichever is up).
func (r *chaosRun) restartAgent(n *appNode) {
	var args []string
	for _, o := range r.nodes {
		if o != n {
			args = append(args, "-join", o.GossipAddr())
		}
	}
	n.start(args...)
}

func (r *chaosRun) restartApp(n *appNode) { n.startApp(r.t) }

// split asks n's agent to split the lowest-numbered partition n leads (or,
// when it leads none, the lowest-numbered one with a primary) and says
// which; a split the agent refuses (4 in flight, no primary) is no error of
// the cluster's and is only recorded.
func (r *chaosRun) split(n *appNode) string {
	pt, err := n.Partitions()
	if err != nil {
		return fmt.Sprintf(": no table (%v)", err)
	}
	id := -1
	for _, p := range pt.Partitions {
		if p.Primary != "" && (id < 0 || p.Primary == n.ID) {
			id = p.ID
			if p.Primary == n.ID {
				break
			}
		}
	}
	if id < 0 {
		return ": no partition has a primary"
	}
	if err := n.PostJSON(fmt.Sprintf("/v1/partitions/%d/split", id), "", map[string]string{"resource": "default"}, nil); err != nil {
		return fmt.Sprintf(": partition %d not split (%v)", id, err)
	}
	return fmt.Sprintf(": partition %d", id)
}
