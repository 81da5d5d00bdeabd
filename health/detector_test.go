package health

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

var errRefused = errors.New("connection refused")

// testConfig is the lan profile with short flap settings that are easy to
// compute with.
func testConfig() Config {
	// The scripts below are written for 1 s probes (the lan profile's
	// until issue 17), whatever the profiles use now.
	cfg := DefaultConfig()
	cfg.ProbeInterval, cfg.ProbeTimeout = time.Second, 500*time.Millisecond
	cfg.FlapWindow = time.Minute
	cfg.HoldDownBase = 10 * time.Second
	cfg.HoldDownMax = 35 * time.Second
	return cfg
}

// step is one line of a detector script: at an offset from t0, something
// happens to a node, and the listed verdicts ("failed n1", "recovered n1")
// must come out of it.
type step struct {
	at   time.Duration
	what string // suspect, alive, dead, left, ok, fail, tick
	node string
	want []string
}

func s(at time.Duration, what, node string, want ...string) step {
	return step{at: at, what: what, node: node, want: want}
}

func runScript(t *testing.T, d *Detector, steps []step) []Verdict {
	t.Helper()
	var all []Verdict
	for i, st := range steps {
		at := t0.Add(st.at)
		var got []Verdict
		switch st.what {
		case "suspect":
			got = d.Observe(Suspect(st.node, at))
		case "alive":
			got = d.Observe(Alive(st.node, at))
		case "dead":
			got = d.Observe(Dead(st.node, at))
		case "left":
			got = d.Observe(Left(st.node, at))
		case "ok":
			got = d.Observe(ProbeResult(st.node, nil, at))
		case "fail":
			got = d.Observe(ProbeResult(st.node, errRefused, at))
		case "starved":
			got = d.Observe(ProbeResult(st.node, fmt.Errorf("%w: ended 2s after it began", ErrProberStarved), at))
		case "tick":
			got = d.Tick(at)
		default:
			t.Fatalf("step %d: unknown action %q", i, st.what)
		}
		var names []string
		for _, v := range got {
			names = append(names, v.Kind.String()+" "+v.Node)
		}
		if !reflect.DeepEqual(names, st.want) {
			t.Fatalf("step %d (%v %s %s): verdicts %q, want %q", i, st.at, st.what, st.node, names, st.want)
		}
		all = append(all, got...)
	}
	return all
}

func TestDetectorScenarios(t *testing.T) {
	sec := time.Second
	tests := []struct {
		name      string
		threshold int
		steps     []step
		wantState State
		wantFails int
	}{
		{
			name: "three failed probes after a suspicion fail the node",
			steps: []step{
				s(0, "suspect", "n1"),
				s(100*time.Millisecond, "fail", "n1"),
				s(1*sec, "fail", "n1"),
				s(2*sec, "fail", "n1", "failed n1"),
			},
			wantState: StateFailed, wantFails: 3,
		},
		{
			name: "two failed probes are not enough",
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1"),
			},
			wantState: StateSuspect, wantFails: 2,
		},
		{
			name: "a success resets the count: a paused process that resumes in time is kept",
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1"),
				s(2*sec, "ok", "n1"),
				s(5*sec, "suspect", "n1"),
				s(5*sec, "fail", "n1"),
				s(6*sec, "fail", "n1"),
			},
			wantState: StateSuspect, wantFails: 2,
		},
		{
			name: "gossip dead counts as a failed probe",
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "dead", "n1"),
				s(2*sec, "fail", "n1", "failed n1"),
			},
			wantState: StateFailed, wantFails: 3,
		},
		{
			name: "gossip dead without a prior suspicion starts one and counts",
			steps: []step{
				s(0, "dead", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1", "failed n1"),
			},
			wantState: StateFailed, wantFails: 3,
		},
		{
			name: "a suspicion alone never fails a node, however often repeated",
			steps: []step{
				s(0, "suspect", "n1"),
				s(1*sec, "suspect", "n1"),
				s(2*sec, "suspect", "n1"),
				s(3*sec, "suspect", "n1"),
			},
			wantState: StateSuspect, wantFails: 0,
		},
		{
			name: "suspect then refuted by gossip gives no verdict and clears the count",
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1"),
				s(1500*time.Millisecond, "alive", "n1"),
			},
			wantState: StateHealthy, wantFails: 0,
		},
		{
			name: "a failed probe of a healthy node is stale and ignored",
			steps: []step{
				s(0, "suspect", "n1"),
				s(100*time.Millisecond, "alive", "n1"),
				s(150*time.Millisecond, "fail", "n1"),
				s(1*sec, "fail", "n1"),
				s(2*sec, "fail", "n1"),
			},
			wantState: StateHealthy, wantFails: 0,
		},
		{
			name: "a failed node that comes back recovers after three successful probes in a row",
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1"),
				s(2*sec, "fail", "n1", "failed n1"),
				s(3*sec, "dead", "n1"),
				s(30*sec, "alive", "n1"),
				s(30*sec, "ok", "n1"),
				s(31*sec, "ok", "n1"),
				s(32*sec, "ok", "n1", "recovered n1"),
			},
			wantState: StateHealthy, wantFails: 0,
		},
		{
			name: "gossip's word alone never recovers a failed node",
			steps: []step{
				s(0, "dead", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1", "failed n1"),
				s(2*sec, "alive", "n1"),
				s(3*sec, "alive", "n1"),
				s(4*sec, "alive", "n1"),
			},
			wantState: StateFailed, wantFails: 3,
		},
		{
			name: "a lossy node whose probes succeed now and then stays failed",
			steps: []step{
				s(0, "dead", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1", "failed n1"),
				s(2*sec, "ok", "n1"),
				s(3*sec, "ok", "n1"),
				s(4*sec, "fail", "n1"),
				s(5*sec, "ok", "n1"),
				s(6*sec, "alive", "n1"),
				s(6*sec, "ok", "n1"),
				s(7*sec, "suspect", "n1"),
				s(8*sec, "ok", "n1"),
				s(9*sec, "ok", "n1"),
			},
			wantState: StateFailed, wantFails: 0,
		},
		{
			name: "a failed node keeps counting failures without new verdicts",
			steps: []step{
				s(0, "dead", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1", "failed n1"),
				s(2*sec, "fail", "n1"),
				s(3*sec, "suspect", "n1"),
			},
			wantState: StateFailed, wantFails: 4,
		},
		{
			name:      "threshold 1: the first failure decides",
			threshold: 1,
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1", "failed n1"),
			},
			wantState: StateFailed, wantFails: 1,
		},
		{
			name:      "threshold 5 needs five",
			threshold: 5,
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "fail", "n1"),
				s(1*sec, "fail", "n1"),
				s(2*sec, "fail", "n1"),
				s(3*sec, "fail", "n1"),
				s(4*sec, "fail", "n1", "failed n1"),
			},
			wantState: StateFailed, wantFails: 5,
		},
		{
			name: "nodes are counted separately",
			steps: []step{
				s(0, "suspect", "n1"),
				s(0, "suspect", "n2"),
				s(0, "fail", "n1"),
				s(0, "fail", "n2"),
				s(1*sec, "fail", "n1"),
				s(1*sec, "ok", "n2"),
				s(2*sec, "fail", "n1", "failed n1"),
			},
			wantState: StateFailed, wantFails: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.threshold > 0 {
				cfg.FailureThreshold = tt.threshold
			}
			d := NewDetector(cfg)
			runScript(t, d, tt.steps)
			got, ok := d.Node("n1")
			if !ok {
				t.Fatal("n1 unknown to the detector")
			}
			if got.State != tt.wantState || got.ConsecutiveFailures != tt.wantFails {
				t.Fatalf("n1 is %s with %d failures, want %s with %d", got.State, got.ConsecutiveFailures, tt.wantState, tt.wantFails)
			}
		})
	}
}

func TestFailedVerdictCarriesCountAndSuspicionTime(t *testing.T) {
	d := NewDetector(testConfig())
	verdicts := runScript(t, d, []step{
		s(0, "suspect", "n1"),
		s(200*time.Millisecond, "fail", "n1"),
		s(1200*time.Millisecond, "fail", "n1"),
		s(2200*time.Millisecond, "fail", "n1", "failed n1"),
	})
	v := verdicts[0]
	if v.Failures != 3 || v.SuspectedFor != 2200*time.Millisecond || !v.At.Equal(t0.Add(2200*time.Millisecond)) {
		t.Fatalf("verdict %+v: want 3 failures, suspected for 2.2s, at t0+2.2s", v)
	}
	if !strings.Contains(v.Reason, "3 consecutive failed probes") || !strings.Contains(v.Reason, "connection refused") {
		t.Fatalf("reason %q should give the count and the last error", v.Reason)
	}
}

func TestLeftIsNotAFailure(t *testing.T) {
	d := NewDetector(testConfig())
	runScript(t, d, []step{
		s(0, "suspect", "n1"),
		s(0, "fail", "n1"),
		s(1*time.Second, "fail", "n1"),
		s(1500*time.Millisecond, "left", "n1"),
		// The probe that was in flight when it left comes back failed.
		s(2*time.Second, "fail", "n1"),
		s(3*time.Second, "tick", ""),
	})
	if _, ok := d.Node("n1"); ok {
		t.Fatal("a node that left should be forgotten")
	}
	if c := d.Counters(); c.FailedVerdicts != 0 {
		t.Fatalf("counters %+v: a leave must not produce a verdict", c)
	}
	// Joining again under the same ID starts from a clean slate.
	runScript(t, d, []step{
		s(10*time.Second, "suspect", "n1"),
		s(10*time.Second, "fail", "n1"),
	})
	if n, _ := d.Node("n1"); n.ConsecutiveFailures != 1 {
		t.Fatalf("after leaving and coming back n1 has %d failures, want 1", n.ConsecutiveFailures)
	}
}

func TestFlapDampingHoldsDownForAGrowingTime(t *testing.T) {
	// FailureThreshold and RecoverThreshold 1 keep the script short: one
	// dead is a failure, one successful probe a recovery.
	cfg := testConfig() // window 1m, base 10s, max 35s
	cfg.FailureThreshold = 1
	cfg.RecoverThreshold = 1
	d := NewDetector(cfg)
	sec := time.Second

	runScript(t, d, []step{
		// First failure and recovery: no flap yet, recovered at once.
		s(0, "dead", "n1", "failed n1"),
		s(2*sec, "ok", "n1", "recovered n1"),
		// Second failure within the window: the recovery is held down 10s.
		s(5*sec, "dead", "n1", "failed n1"),
		s(6*sec, "ok", "n1"),
	})
	n, _ := d.Node("n1")
	if n.State != StateHeldDown || !n.HeldDownUntil.Equal(t0.Add(16*sec)) || n.Flaps != 1 {
		t.Fatalf("after the second flap: %+v, want held-down until t0+16s with 1 flap", n)
	}
	runScript(t, d, []step{
		s(10*sec, "ok", "n1"), // life during hold-down changes nothing
		s(15*sec, "tick", ""),
		s(16*sec, "tick", "", "recovered n1"),
		// Third failure within the window: 20s.
		s(20*sec, "dead", "n1", "failed n1"),
		s(21*sec, "ok", "n1"),
	})
	if n, _ := d.Node("n1"); !n.HeldDownUntil.Equal(t0.Add(41 * sec)) {
		t.Fatalf("third flap held down until %v, want t0+41s (20s)", n.HeldDownUntil.Sub(t0))
	}
	runScript(t, d, []step{
		s(41*sec, "tick", "", "recovered n1"),
		// Fourth: 40s, capped at 35s.
		s(45*sec, "dead", "n1", "failed n1"),
		s(46*sec, "ok", "n1"),
	})
	if n, _ := d.Node("n1"); !n.HeldDownUntil.Equal(t0.Add(81*sec)) || n.Flaps != 3 {
		t.Fatalf("fourth flap: held down until %v with %d flaps, want t0+81s (35s cap) and 3 flaps", n.HeldDownUntil.Sub(t0), n.Flaps)
	}
	runScript(t, d, []step{
		s(81*sec, "tick", "", "recovered n1"),
		// Long after the window, a failure is a first failure again.
		s(300*sec, "dead", "n1", "failed n1"),
		s(301*sec, "ok", "n1", "recovered n1"),
	})
	if c := d.Counters(); c.Flaps != 3 || c.FailedVerdicts != 5 || c.RecoveredVerdicts != 5 {
		t.Fatalf("counters %+v: want 3 flaps, 5 failed and 5 recovered verdicts", c)
	}
}

func TestRelapseDuringHoldDownGoesBackToFailedSilently(t *testing.T) {
	cfg := testConfig()
	cfg.FailureThreshold = 1
	cfg.RecoverThreshold = 1
	d := NewDetector(cfg)
	sec := time.Second
	runScript(t, d, []step{
		s(0, "dead", "n1", "failed n1"),
		s(1*sec, "ok", "n1", "recovered n1"),
		s(2*sec, "dead", "n1", "failed n1"),
		s(3*sec, "ok", "n1"), // held down 10s
		// Suspected again while held down: back to failed, no verdict
		// (the cluster never heard it recovered).
		s(5*sec, "suspect", "n1"),
		s(20*sec, "tick", ""),
	})
	if n, _ := d.Node("n1"); n.State != StateFailed {
		t.Fatalf("after a relapse n1 is %s, want failed", n.State)
	}
	// The relapse counts: three failures in the window, 20s hold-down.
	runScript(t, d, []step{s(25*sec, "ok", "n1")})
	if n, _ := d.Node("n1"); n.State != StateHeldDown || !n.HeldDownUntil.Equal(t0.Add(45*sec)) {
		t.Fatalf("after the relapse: %+v, want held-down until t0+45s", n)
	}
}

func TestDampingOff(t *testing.T) {
	cfg := testConfig()
	cfg.FailureThreshold = 1
	cfg.RecoverThreshold = 1
	cfg.HoldDownBase = 0
	d := NewDetector(cfg)
	runScript(t, d, []step{
		s(0, "dead", "n1", "failed n1"),
		s(1*time.Second, "ok", "n1", "recovered n1"),
		s(2*time.Second, "dead", "n1", "failed n1"),
		s(3*time.Second, "ok", "n1", "recovered n1"),
	})
}

func TestDueProbesSuspectNodesEveryInterval(t *testing.T) {
	cfg := testConfig() // interval 1s
	d := NewDetector(cfg)
	ms := time.Millisecond
	d.Observe(Suspect("n2", t0))
	d.Observe(Suspect("n1", t0.Add(100*ms)))
	d.Observe(Alive("n3", t0)) // healthy: never probed

	checks := []struct {
		at   time.Duration
		want []string
	}{
		{0, []string{"n2"}},
		{0, nil}, // claimed already
		{100 * ms, []string{"n1"}},
		{999 * ms, nil},
		{1000 * ms, []string{"n2"}},
		{1100 * ms, []string{"n1"}},
		{5000 * ms, []string{"n1", "n2"}}, // late ticks: both due, ordered by ID
	}
	for _, c := range checks {
		if got := d.Due(t0.Add(c.at)); !reflect.DeepEqual(got, c.want) {
			t.Fatalf("Due(t0+%v) = %q, want %q", c.at, got, c.want)
		}
	}
	// A refuted node is no longer probed; a failed one is, every
	// recoveryProbeFactor intervals, so that its return is seen.
	d.Observe(Alive("n1", t0.Add(5100*ms)))
	for i := range 3 {
		d.Observe(ProbeResult("n2", errRefused, t0.Add(5100*ms+time.Duration(i)*ms)))
	}
	if got := d.Due(t0.Add(time.Minute)); !reflect.DeepEqual(got, []string{"n2"}) {
		t.Fatalf("Due after refutation and failure = %q, want only the failed n2", got)
	}
	if got := d.Due(t0.Add(time.Minute + 3*time.Second)); len(got) != 0 {
		t.Fatalf("a failed node probed again before %d intervals: %q", recoveryProbeFactor, got)
	}
	if got := d.Due(t0.Add(time.Minute + 4*time.Second)); !reflect.DeepEqual(got, []string{"n2"}) {
		t.Fatalf("the failed node is not probed again after %d intervals: %q", recoveryProbeFactor, got)
	}
	// Its probe succeeds: from then on it is probed every interval, and
	// the third success in a row recovers it.
	back := t0.Add(time.Minute + 4*time.Second)
	if v := d.Observe(ProbeResult("n2", nil, back)); len(v) != 0 {
		t.Fatalf("one successful probe of a failed node gave %+v, want nothing yet", v)
	}
	for i := 1; i <= 2; i++ {
		at := back.Add(time.Duration(i) * time.Second)
		if got := d.Due(at); !reflect.DeepEqual(got, []string{"n2"}) {
			t.Fatalf("a failed node answering again is not probed every interval: Due(+%ds) = %q", i, got)
		}
		v := d.Observe(ProbeResult("n2", nil, at))
		if i == 2 && (len(v) != 1 || v[0].Kind != VerdictRecovered) {
			t.Fatalf("three successful probes in a row gave %+v, want Recovered", v)
		}
	}
}

// A failed node that answers again is probed RecoverInterval apart, not
// ProbeInterval: with the wan profile's 3 s probes, a restarted agent would
// otherwise wait 6 s to be taken back.
func TestAReturningNodeIsProbedRecoverIntervalApart(t *testing.T) {
	cfg := testConfig() // interval 1s
	cfg.RecoverInterval = 250 * time.Millisecond
	d := NewDetector(cfg)
	ms := time.Millisecond
	d.Observe(Suspect("n1", t0))
	var failed []Verdict
	for i := range 3 {
		failed = append(failed, d.Observe(ProbeResult("n1", errRefused, t0.Add(time.Duration(i)*ms)))...)
	}
	if len(failed) != 1 || failed[0].Kind != VerdictFailed {
		t.Fatalf("three failed probes gave %+v, want one Failed", failed)
	}
	// Gossip says it is alive: probed at once, then 250 ms apart.
	back := t0.Add(10 * time.Second)
	d.Observe(Alive("n1", back))
	for i, want := range []time.Duration{0, 250 * ms, 500 * ms} {
		at := back.Add(want)
		if got := d.Due(at.Add(-ms)); i > 0 && len(got) != 0 {
			t.Fatalf("probe %d due before %v: %q", i+1, want, got)
		}
		if got := d.Due(at); !reflect.DeepEqual(got, []string{"n1"}) {
			t.Fatalf("probe %d not due at %v after the sign of life: %q", i+1, want, got)
		}
		v := d.Observe(ProbeResult("n1", nil, at))
		if recovered := len(v) == 1 && v[0].Kind == VerdictRecovered; recovered != (i == 2) {
			t.Fatalf("after success %d: verdicts %+v", i+1, v)
		}
	}
	if err := (Config{ProbeInterval: time.Second, ProbeTimeout: time.Millisecond, FailureThreshold: 1, RecoverInterval: -1}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("a negative RecoverInterval: %v, want ErrInvalidConfig", err)
	}
	if got := WANConfig().recoverInterval(); got != time.Second {
		t.Fatalf("wan recover interval %v, want 1s", got)
	}
	if got := LANConfig().recoverInterval(); got != LANConfig().ProbeInterval {
		t.Fatalf("lan recover interval %v, want its probe interval", got)
	}
}

func TestSnapshotAndCounters(t *testing.T) {
	d := NewDetector(testConfig())
	sec := time.Second
	runScript(t, d, []step{
		s(0, "alive", "a"),
		s(0, "suspect", "c"),
		s(0, "fail", "c"),
		s(0, "suspect", "b"),
		s(0, "ok", "b"),
		s(1*sec, "fail", "c"),
		s(2*sec, "dead", "c", "failed c"),
	})
	snap := d.Snapshot()
	var got []string
	for _, n := range snap {
		got = append(got, fmt.Sprintf("%s:%s:%d:%d:%d", n.Node, n.State, n.ConsecutiveFailures, n.Suspicions, n.FailedProbes))
	}
	want := []string{"a:healthy:0:0:0", "b:healthy:0:1:0", "c:failed:3:1:3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot %q, want %q", got, want)
	}
	if c := snap[2]; !c.LastChange.Equal(t0.Add(2*sec)) || !c.SuspectSince.Equal(t0) {
		t.Fatalf("c changed at %v, suspected since %v; want t0+2s and t0", c.LastChange, c.SuspectSince)
	}
	wantCounters := Counters{Suspicions: 2, FailedProbes: 3, SucceededProbes: 1, FailedVerdicts: 1, ProbeTimeout: 500 * time.Millisecond}
	if c := d.Counters(); c != wantCounters {
		t.Fatalf("counters %+v, want %+v", c, wantCounters)
	}
}

// A probe that ran out while this agent was starved says nothing about
// the node: it neither fails nor clears it, and it gives later probes more
// time, up to four timeouts, until probes are answered in time again.
func TestAStarvedProberNeitherFailsNorClearsAndWaitsLonger(t *testing.T) {
	d := NewDetector(testConfig())
	sec := time.Second
	timeout := d.Config().ProbeTimeout
	runScript(t, d, []step{
		s(0, "suspect", "n1"),
		s(0, "fail", "n1"),
		s(1*sec, "starved", "n1"),
		s(2*sec, "starved", "n1"),
		s(3*sec, "starved", "n1"),
		s(4*sec, "starved", "n1"),
	})
	if h, _ := d.Node("n1"); h.State != StateSuspect || h.ConsecutiveFailures != 1 {
		t.Fatalf("n1 after four starved probes: %s with %d failures, want suspect with the 1 failure from before", h.State, h.ConsecutiveFailures)
	}
	if got := d.ProbeTimeout(); got != 4*timeout {
		t.Fatalf("probe timeout after four starved probes %v, want four timeouts (%v)", got, 4*timeout)
	}
	if c := d.Counters(); c.InconclusiveProbes != 4 || c.FailedProbes != 1 || c.ProbeTimeout != 4*timeout {
		t.Fatalf("counters %+v", c)
	}
	// Failures in time still count: a node that is gone is failed by a
	// starved agent too, only later.
	runScript(t, d, []step{
		s(5*sec, "fail", "n1"),
		s(6*sec, "fail", "n1", "failed n1"),
	})
	// Answers in time bring the timeout back, one step per answer.
	runScript(t, d, []step{
		s(7*sec, "suspect", "n2"),
		s(7*sec, "ok", "n2"),
	})
	if got := d.ProbeTimeout(); got != 3*timeout {
		t.Fatalf("probe timeout after one answer %v, want %v", got, 3*timeout)
	}
	for i := 0; i < 5; i++ {
		d.Observe(ProbeResult("n2", nil, t0.Add(8*sec)))
	}
	if got := d.ProbeTimeout(); got != timeout {
		t.Fatalf("probe timeout after answers in time %v, want the configured %v", got, timeout)
	}
}

// Without probes to answer (nothing suspect), the stretch decays with
// time: one step per stretchDecay probe intervals after the last starved
// probe.
func TestTheStretchedTimeoutDecaysWhenNothingIsProbed(t *testing.T) {
	d := NewDetector(testConfig())
	timeout, every := d.Config().ProbeTimeout, d.Config().ProbeInterval
	d.Observe(Suspect("n1", t0))
	for i := 0; i < 3; i++ {
		d.Observe(ProbeResult("n1", fmt.Errorf("%w: late", ErrProberStarved), t0))
	}
	if got := d.ProbeTimeout(); got != 4*timeout {
		t.Fatalf("after three starved probes: %v, want %v", got, 4*timeout)
	}
	d.Tick(t0.Add(stretchDecay*every - time.Millisecond))
	if got := d.ProbeTimeout(); got != 4*timeout {
		t.Fatalf("before the decay: %v, want %v", got, 4*timeout)
	}
	for step := 1; step <= 4; step++ {
		d.Tick(t0.Add(time.Duration(step) * stretchDecay * every))
	}
	if got := d.ProbeTimeout(); got != timeout {
		t.Fatalf("after the decay: %v, want the configured %v", got, timeout)
	}
}

func TestHoldDownDurations(t *testing.T) {
	cfg := Config{HoldDownBase: 10 * time.Second, HoldDownMax: 100 * time.Second}
	for flaps, want := range map[int]time.Duration{
		0: 0, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second,
		4: 80 * time.Second, 5: 100 * time.Second, 60: 100 * time.Second, 1000: 100 * time.Second,
	} {
		if got := cfg.holdDown(flaps); got != want {
			t.Errorf("holdDown(%d) = %v, want %v", flaps, got, want)
		}
	}
}
