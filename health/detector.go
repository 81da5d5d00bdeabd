package health

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// ObservationKind says what an Observation reports.
type ObservationKind int

const (
	// ObservedSuspect: gossip suspects the node. The detector starts
	// probing it; a suspicion alone never fails a node.
	ObservedSuspect ObservationKind = iota + 1
	// ObservedAlive: gossip reports the node alive (it refuted a
	// suspicion, or came back after being dead).
	ObservedAlive
	// ObservedDead: gossip declared the node dead. It counts as one failed
	// probe: memberlist's verdict is strong evidence, but our own probes
	// still confirm it.
	ObservedDead
	// ObservedLeft: the node left gracefully. Not a failure: the detector
	// forgets the node.
	ObservedLeft
	// ObservedProbe: one of our probes of the node finished; Err is nil on
	// success.
	ObservedProbe
)

// String names the kind for logs.
func (k ObservationKind) String() string {
	switch k {
	case ObservedSuspect:
		return "suspect"
	case ObservedAlive:
		return "alive"
	case ObservedDead:
		return "dead"
	case ObservedLeft:
		return "left"
	case ObservedProbe:
		return "probe"
	}
	return fmt.Sprintf("ObservationKind(%d)", int(k))
}

// Observation is one input to the Detector. Build it with Suspect, Alive,
// Dead, Left or ProbeResult.
type Observation struct {
	// Kind says what happened.
	Kind ObservationKind
	// Node is the logical node ID (-node-id), not memberlist's name.
	Node string
	// At is when it happened. Monitor fills a zero At with its clock.
	At time.Time
	// Err is the probe's error for ObservedProbe (nil: the probe
	// succeeded); ignored for the other kinds.
	Err error
}

// Suspect reports that gossip suspects node since at.
func Suspect(node string, at time.Time) Observation {
	return Observation{Kind: ObservedSuspect, Node: node, At: at}
}

// Alive reports that gossip sees node alive at at.
func Alive(node string, at time.Time) Observation {
	return Observation{Kind: ObservedAlive, Node: node, At: at}
}

// Dead reports that gossip declared node dead at at.
func Dead(node string, at time.Time) Observation {
	return Observation{Kind: ObservedDead, Node: node, At: at}
}

// Left reports that node left the cluster gracefully at at.
func Left(node string, at time.Time) Observation {
	return Observation{Kind: ObservedLeft, Node: node, At: at}
}

// ProbeResult reports a probe of node that finished at at; err nil means
// the node answered healthy.
func ProbeResult(node string, err error, at time.Time) Observation {
	return Observation{Kind: ObservedProbe, Node: node, At: at, Err: err}
}

// State is a node's health as the detector sees it. The strings appear in
// /v1/members.
type State string

const (
	// StateHealthy: nothing suspicious, or a suspicion was refuted.
	StateHealthy State = "healthy"
	// StateSuspect: gossip or a failed probe raised a suspicion; probes run
	// every ProbeInterval until one succeeds or the threshold is reached.
	StateSuspect State = "suspect"
	// StateFailed: a Failed verdict was given and no recovery seen since.
	StateFailed State = "failed"
	// StateHeldDown: the node came back but flaps; it counts as failed
	// until HeldDownUntil, when a Recovered verdict is given.
	StateHeldDown State = "held-down"
)

// VerdictKind is what a Verdict decides.
type VerdictKind int

const (
	// VerdictFailed: the node is gone; the leader may mark it failed and
	// remove it.
	VerdictFailed VerdictKind = iota + 1
	// VerdictRecovered: a failed node is back and, if it flapped, has sat
	// out its hold-down.
	VerdictRecovered
)

// String names the kind for logs and metric labels.
func (k VerdictKind) String() string {
	switch k {
	case VerdictFailed:
		return "failed"
	case VerdictRecovered:
		return "recovered"
	}
	return fmt.Sprintf("VerdictKind(%d)", int(k))
}

// Verdict is a decision about one node. Verdicts alternate per node:
// Failed, Recovered, Failed, ... (a node that leaves is forgotten, so its
// last Failed may have no Recovered).
type Verdict struct {
	// Node is the logical node ID.
	Node string
	// Kind is Failed or Recovered.
	Kind VerdictKind
	// At is the time of the observation (or tick) that decided it.
	At time.Time
	// Failures is the consecutive failure count that decided a Failed
	// verdict (at least FailureThreshold); 0 for Recovered.
	Failures int
	// SuspectedFor is the time from the first sign of trouble (suspicion,
	// dead or failed probe) to a Failed verdict: the value of the
	// suspicion-to-verdict histogram. 0 for Recovered.
	SuspectedFor time.Duration
	// Reason explains the verdict in words, for logs and events.
	Reason string
}

// NodeHealth is one node's state, for /v1/members and metrics.
type NodeHealth struct {
	// Node is the logical node ID.
	Node string `json:"node"`
	// State is healthy, suspect, failed or held-down.
	State State `json:"health"`
	// ConsecutiveFailures is the current run of failed probes (gossip
	// "dead" included); a success resets it.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// LastChange is when State last changed (zero if it never did).
	LastChange time.Time `json:"last_change"`
	// SuspectSince is when the current suspicion began; zero unless State
	// is suspect or failed.
	SuspectSince time.Time `json:"suspect_since,omitzero"`
	// Flaps counts the hold-downs this node has earned since the detector
	// first saw it.
	Flaps int `json:"flaps"`
	// HeldDownUntil is when a held-down node will be reported recovered;
	// zero unless State is held-down.
	HeldDownUntil time.Time `json:"held_down_until,omitzero"`
	// Suspicions counts how often this node went from healthy to suspect.
	Suspicions int `json:"suspicions"`
	// FailedProbes counts this node's failed probes (gossip "dead"
	// included).
	FailedProbes int `json:"failed_probes"`
}

// Counters are the detector's totals since it was created, for metrics.
// They only go up; nodes that left still count.
type Counters struct {
	// Suspicions counts healthy-to-suspect transitions.
	Suspicions uint64
	// FailedProbes counts failed probes, gossip "dead" included.
	FailedProbes uint64
	// SucceededProbes counts successful probes.
	SucceededProbes uint64
	// FailedVerdicts counts Failed verdicts.
	FailedVerdicts uint64
	// RecoveredVerdicts counts Recovered verdicts.
	RecoveredVerdicts uint64
	// Flaps counts hold-downs started.
	Flaps uint64
	// InconclusiveProbes counts probes that timed out while this process
	// was itself starved (ErrProberStarved): neither a failure nor a
	// success.
	InconclusiveProbes uint64
	// ProbeTimeout is the timeout probes run with now: Config.ProbeTimeout
	// stretched while this agent's own probes run late (see
	// Detector.ProbeTimeout).
	ProbeTimeout time.Duration
}

// nodeRecord is the detector's memory of one node.
type nodeRecord struct {
	state         State
	failures      int
	lastChange    time.Time
	suspectSince  time.Time
	nextProbe     time.Time
	heldDownUntil time.Time
	// recentFailures holds the times of Failed verdicts (and of relapses
	// during hold-down) inside FlapWindow, oldest first.
	recentFailures []time.Time
	flaps          int
	suspicions     int
	failedProbes   int
	// successes is the current run of successful probes of a failed node
	// (see Config.RecoverThreshold).
	successes int
}

// Detector is the pure failure detector. It holds no clock: Observe, Tick
// and Due take the time from their arguments. It is not safe for concurrent
// use; Monitor serialises access to it.
//
// Per node it runs this state machine:
//
//	healthy  --suspect, dead or failed probe-->  suspect
//	suspect  --alive or successful probe------>  healthy   (no verdict)
//	suspect  --FailureThreshold failures------>  failed    (Failed verdict)
//	failed   --alive--------------------------->  failed    (probed at once)
//	failed   --RecoverThreshold successful
//	           probes in a row---------------->  healthy   (Recovered verdict)
//	                                        or   held-down (if flapping; no verdict)
//	held-down --Tick at HeldDownUntil--------->  healthy   (Recovered verdict)
//	held-down --suspect, dead or failed probe->  failed    (a relapse; no verdict,
//	                                                        the cluster still
//	                                                        holds it failed)
//	any      --left--------------------------->  forgotten (no verdict)
//
// Probe results for a healthy node are ignored: they belong to a probe
// started before a refutation, and only the probes the detector asked for
// (Due) are evidence.
type Detector struct {
	cfg      Config
	nodes    map[string]*nodeRecord
	counters Counters
	// starvation is this agent's own lateness score, 0 to maxStretch: up
	// one for every probe that ran out while this process was starved, down
	// one for every probe answered in time and for every stretchDecay
	// probe intervals without a starved probe (see ProbeTimeout);
	// starvedAt is when it last went up or decayed.
	starvation int
	starvedAt  time.Time
}

// NewDetector returns a detector with no nodes. cfg should pass Validate.
func NewDetector(cfg Config) *Detector {
	return &Detector{cfg: cfg, nodes: make(map[string]*nodeRecord)}
}

// Config returns the configuration the detector runs with.
func (d *Detector) Config() Config { return d.cfg }

func (d *Detector) record(node string) *nodeRecord {
	r, ok := d.nodes[node]
	if !ok {
		r = &nodeRecord{state: StateHealthy}
		d.nodes[node] = r
	}
	return r
}

func (r *nodeRecord) setState(s State, at time.Time) {
	if r.state != s {
		r.state = s
		r.lastChange = at
	}
}

// Observe applies one observation and returns the verdicts it decides (at
// most one).
func (d *Detector) Observe(ev Observation) []Verdict {
	if ev.Node == "" {
		return nil
	}
	if ev.Kind == ObservedLeft {
		// A graceful leave is not a failure and must not feed the flap
		// history of a node that may later join again under the same ID.
		delete(d.nodes, ev.Node)
		return nil
	}
	if _, known := d.nodes[ev.Node]; !known && ev.Kind == ObservedProbe {
		return nil // a probe of a node that left meanwhile
	}
	r := d.record(ev.Node)
	switch ev.Kind {
	case ObservedSuspect:
		return d.onTrouble(ev.Node, r, ev.At, false, "gossip suspects it")
	case ObservedDead:
		return d.onTrouble(ev.Node, r, ev.At, true, "gossip declared it dead")
	case ObservedProbe:
		if errors.Is(ev.Err, ErrProberStarved) {
			// Evidence about this process, not about the node: the node
			// may well have answered while nobody here was running to
			// read it.
			d.counters.InconclusiveProbes++
			d.starvation = min(d.starvation+1, maxStretch)
			d.starvedAt = ev.At
			return nil
		}
		if ev.Err == nil {
			d.starvation = max(d.starvation-1, 0)
			d.counters.SucceededProbes++
			return d.onHealthy(ev.Node, r, ev.At, true, "probe succeeded")
		}
		if r.state == StateHealthy {
			return nil // stale: see the Detector doc
		}
		return d.onTrouble(ev.Node, r, ev.At, true, "probe failed: "+ev.Err.Error())
	case ObservedAlive:
		return d.onHealthy(ev.Node, r, ev.At, false, "gossip reports it alive")
	}
	return nil
}

// onTrouble handles a sign of failure. failedProbe says whether it counts
// towards the threshold (a dead or a failed probe) or only raises a
// suspicion.
func (d *Detector) onTrouble(node string, r *nodeRecord, at time.Time, failedProbe bool, why string) []Verdict {
	if failedProbe {
		r.failedProbes++
		d.counters.FailedProbes++
	}
	r.successes = 0
	switch r.state {
	case StateHealthy:
		r.setState(StateSuspect, at)
		r.suspectSince = at
		r.nextProbe = at // probe at once
		r.failures = 0
		r.suspicions++
		d.counters.Suspicions++
	case StateHeldDown:
		// A relapse during hold-down: the cluster still holds the node
		// failed (no Recovered was given), so no verdict, but the relapse
		// counts as a failure for the next hold-down.
		r.setState(StateFailed, at)
		r.heldDownUntil = time.Time{}
		r.suspectSince = at
		r.failures = 0
		d.rememberFailure(r, at)
		if failedProbe {
			r.failures = 1
		}
		return nil
	case StateFailed:
		if failedProbe {
			r.failures++
		}
		return nil
	}
	if !failedProbe {
		return nil
	}
	r.failures++
	if r.failures < d.cfg.FailureThreshold {
		return nil
	}
	r.setState(StateFailed, at)
	d.rememberFailure(r, at)
	d.counters.FailedVerdicts++
	return []Verdict{{
		Node:         node,
		Kind:         VerdictFailed,
		At:           at,
		Failures:     r.failures,
		SuspectedFor: at.Sub(r.suspectSince),
		Reason:       fmt.Sprintf("%d consecutive failed probes; last: %s", r.failures, why),
	}}
}

// onHealthy handles a sign of life: a successful probe of this detector's
// (probe) or gossip's word.
func (d *Detector) onHealthy(node string, r *nodeRecord, at time.Time, probe bool, why string) []Verdict {
	switch r.state {
	case StateHealthy, StateHeldDown:
		// Held down: life is expected; only time ends the hold-down.
		return nil
	case StateSuspect:
		r.setState(StateHealthy, at)
		r.failures = 0
		r.suspectSince = time.Time{}
		return nil
	}
	// Failed and now alive: recovered once RecoverThreshold probes in a
	// row succeeded (probed RecoverInterval apart from the first sign of
	// life), unless it flaps.
	if !probe {
		r.nextProbe = at
		return nil
	}
	r.successes++
	r.failures = 0
	if r.successes < d.cfg.recoverThreshold() {
		r.nextProbe = at.Add(d.cfg.recoverInterval())
		return nil
	}
	if r.successes > 1 {
		why = fmt.Sprintf("%d probes in a row succeeded", r.successes)
	}
	r.successes = 0
	r.failures = 0
	r.suspectSince = time.Time{}
	d.pruneFailures(r, at)
	if flaps := len(r.recentFailures) - 1; flaps >= 1 && d.cfg.HoldDownBase > 0 {
		hold := d.cfg.holdDown(flaps)
		r.setState(StateHeldDown, at)
		r.heldDownUntil = at.Add(hold)
		r.flaps++
		d.counters.Flaps++
		return nil
	}
	r.setState(StateHealthy, at)
	d.counters.RecoveredVerdicts++
	return []Verdict{{Node: node, Kind: VerdictRecovered, At: at, Reason: why}}
}

func (d *Detector) rememberFailure(r *nodeRecord, at time.Time) {
	r.recentFailures = append(r.recentFailures, at)
	d.pruneFailures(r, at)
}

// pruneFailures drops failures older than FlapWindow before now.
func (d *Detector) pruneFailures(r *nodeRecord, now time.Time) {
	if d.cfg.FlapWindow <= 0 {
		r.recentFailures = r.recentFailures[:0]
		return
	}
	cut := now.Add(-d.cfg.FlapWindow)
	i := 0
	for i < len(r.recentFailures) && r.recentFailures[i].Before(cut) {
		i++
	}
	r.recentFailures = append(r.recentFailures[:0], r.recentFailures[i:]...)
}

// Tick advances time: it ends the hold-downs that are over and returns
// their Recovered verdicts, ordered by node ID; and it lets the stretch of
// the probe timeout decay (see ProbeTimeout).
func (d *Detector) Tick(now time.Time) []Verdict {
	if d.starvation > 0 && now.Sub(d.starvedAt) >= stretchDecay*d.cfg.ProbeInterval {
		d.starvation--
		d.starvedAt = now
	}
	var out []Verdict
	for _, node := range d.sortedNodes() {
		r := d.nodes[node]
		if r.state != StateHeldDown || now.Before(r.heldDownUntil) {
			continue
		}
		held := r.heldDownUntil.Sub(r.lastChange)
		r.setState(StateHealthy, now)
		r.heldDownUntil = time.Time{}
		d.counters.RecoveredVerdicts++
		out = append(out, Verdict{
			Node:   node,
			Kind:   VerdictRecovered,
			At:     now,
			Reason: fmt.Sprintf("back after a hold-down of %v (flapped %d times within %v)", held, len(r.recentFailures)-1, d.cfg.FlapWindow),
		})
	}
	return out
}

// ProbeTimeout is the timeout of the next probe: Config.ProbeTimeout,
// stretched by one more ProbeTimeout for every step of this agent's own
// lateness, up to maxStretch: what Lifeguard (Dadgar et al., 2018) does
// for memberlist's probes, applied to these. An agent whose probes run out
// while it is itself starved of CPU (a machine running at a load of 50, a
// long GC, a throttled container) gives its peers more time rather than
// failing them for its own slowness, and a prober that runs on time again
// (successful probes) comes back to the configured timeout one step per
// success, or one step per stretchDecay probe intervals without a starved
// probe (a cluster where nothing is suspect runs no probes, and the next
// failure should not find the timeout stretched by a load long gone). A
// node that is really gone still fails: a stretched probe of a stopped or
// cut-off node runs out on time.
func (d *Detector) ProbeTimeout() time.Duration {
	return d.cfg.ProbeTimeout * time.Duration(1+d.starvation)
}

// maxStretch bounds the stretch of ProbeTimeout at four times its value
// (600 ms on local, 1 s on lan, 8 s on wan): enough for a prober that
// runs a few hundred milliseconds late, short enough that a node that is
// gone is still failed within a few seconds on a starved machine.
const maxStretch = 3

// stretchDecay is how many probe intervals without a starved probe take
// one step off the stretch (2 s on local, 3 s on lan, 30 s on wan): long
// enough to ride out a busy spell, short enough that the full stretch is
// gone within seconds of the load.
const stretchDecay = 10

// Due returns the suspect and failed nodes whose next probe is due at now,
// ordered by node ID, and schedules their following probe: ProbeInterval
// later for a suspect node, recoveryProbeFactor intervals later for a failed
// one. It is a claim, not a query: a second call at the same now returns
// nothing.
func (d *Detector) Due(now time.Time) []string {
	var due []string
	for _, node := range d.sortedNodes() {
		r := d.nodes[node]
		var every time.Duration
		switch r.state {
		case StateSuspect:
			every = d.cfg.ProbeInterval
		case StateFailed:
			// A failed node is still probed, less often, so that its
			// return is seen by this detector's own probes: gossip does
			// not always say so (a node that refutes a suspicion it never
			// heard of from us raises no event here).
			every = recoveryProbeFactor * d.cfg.ProbeInterval
		default:
			continue
		}
		if now.Before(r.nextProbe) {
			continue
		}
		r.nextProbe = now.Add(every)
		due = append(due, node)
	}
	return due
}

// recoveryProbeFactor: failed nodes are probed every this many probe
// intervals (0.8 s with the local profile, 4 s on a LAN): soon enough to
// take a returning node back within seconds, rare enough to cost nothing
// for a node that is gone for good.
const recoveryProbeFactor = 4

// Snapshot returns every known node's health, ordered by node ID.
func (d *Detector) Snapshot() []NodeHealth {
	out := make([]NodeHealth, 0, len(d.nodes))
	for _, node := range d.sortedNodes() {
		out = append(out, d.nodeHealth(node, d.nodes[node]))
	}
	return out
}

// Node returns one node's health; false if the detector does not know it.
func (d *Detector) Node(node string) (NodeHealth, bool) {
	r, ok := d.nodes[node]
	if !ok {
		return NodeHealth{}, false
	}
	return d.nodeHealth(node, r), true
}

// Counters returns the totals since the detector was created, and the
// probe timeout in force.
func (d *Detector) Counters() Counters {
	c := d.counters
	c.ProbeTimeout = d.ProbeTimeout()
	return c
}

func (d *Detector) nodeHealth(node string, r *nodeRecord) NodeHealth {
	return NodeHealth{
		Node:                node,
		State:               r.state,
		ConsecutiveFailures: r.failures,
		LastChange:          r.lastChange,
		SuspectSince:        r.suspectSince,
		Flaps:               r.flaps,
		HeldDownUntil:       r.heldDownUntil,
		Suspicions:          r.suspicions,
		FailedProbes:        r.failedProbes,
	}
}

func (d *Detector) sortedNodes() []string {
	nodes := make([]string, 0, len(d.nodes))
	for n := range d.nodes {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	return nodes
}
