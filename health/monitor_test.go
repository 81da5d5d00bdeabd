package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// probeCall is one Probe in progress; the test answers it on reply.
type probeCall struct {
	node  string
	ctx   context.Context
	reply chan error
}

// scriptedProber hands every probe to the test and waits for its answer
// (or for the probe's context to end).
type scriptedProber struct {
	calls chan probeCall
}

func newScriptedProber() *scriptedProber {
	return &scriptedProber{calls: make(chan probeCall, 16)}
}

func (p *scriptedProber) Probe(ctx context.Context, node string) error {
	c := probeCall{node: node, ctx: ctx, reply: make(chan error, 1)}
	select {
	case p.calls <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// expectProbe waits for the monitor to probe node.
func (p *scriptedProber) expectProbe(t *testing.T, node string) probeCall {
	t.Helper()
	select {
	case c := <-p.calls:
		if c.node != node {
			t.Fatalf("probed %q, want %q", c.node, node)
		}
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("no probe of %q within 5s", node)
	}
	panic("unreachable")
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func nextVerdict(t *testing.T, m *Monitor) Verdict {
	t.Helper()
	select {
	case v, ok := <-m.Verdicts():
		if !ok {
			t.Fatal("verdicts channel closed")
		}
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no verdict within 5s")
	}
	panic("unreachable")
}

// monitorConfig runs on a manual clock: the interval is an hour of
// manual time, and the probe timeout (real time, through the context) is
// long enough never to fire in a test.
func monitorConfig() Config {
	cfg := DefaultConfig()
	cfg.ProbeInterval = time.Hour
	cfg.ProbeTimeout = 30 * time.Minute
	cfg.FlapWindow = 24 * time.Hour
	cfg.HoldDownBase = 2 * time.Hour
	cfg.HoldDownMax = 8 * time.Hour
	return cfg
}

func failures(m *Monitor, node string) int {
	n, _ := m.Node(node)
	return n.ConsecutiveFailures
}

func TestMonitorFailsASuspectNodeAfterThreeFailedProbes(t *testing.T) {
	clock := NewManualClock(t0)
	prober := newScriptedProber()
	cfg := monitorConfig()
	m := NewMonitor(cfg, prober, clock)
	defer m.Close()

	m.Observe(Suspect("n2", time.Time{})) // At filled from the clock: t0
	// The first probe goes out at once, without waiting for a tick.
	prober.expectProbe(t, "n2").reply <- errRefused
	eventually(t, "n2 has 1 failure", func() bool { return failures(m, "n2") == 1 })

	clock.Advance(cfg.ProbeInterval)
	prober.expectProbe(t, "n2").reply <- errRefused
	eventually(t, "n2 has 2 failures", func() bool { return failures(m, "n2") == 2 })

	clock.Advance(cfg.ProbeInterval)
	prober.expectProbe(t, "n2").reply <- errRefused

	v := nextVerdict(t, m)
	if v.Node != "n2" || v.Kind != VerdictFailed || v.Failures != 3 || v.SuspectedFor != 2*cfg.ProbeInterval {
		t.Fatalf("verdict %+v: want n2 failed after 3 failures, suspected for 2 intervals", v)
	}
	if n, _ := m.Node("n2"); n.State != StateFailed {
		t.Fatalf("n2 is %s, want failed", n.State)
	}
	if c := m.Counters(); c.FailedProbes != 3 || c.FailedVerdicts != 1 || c.Suspicions != 1 {
		t.Fatalf("counters %+v", c)
	}
}

func TestMonitorRefutedSuspicionGivesNoVerdict(t *testing.T) {
	clock := NewManualClock(t0)
	prober := newScriptedProber()
	cfg := monitorConfig()
	m := NewMonitor(cfg, prober, clock)

	m.Observe(Suspect("n2", time.Time{}))
	prober.expectProbe(t, "n2").reply <- errRefused
	eventually(t, "n2 has 1 failure", func() bool { return failures(m, "n2") == 1 })
	clock.Advance(cfg.ProbeInterval)
	prober.expectProbe(t, "n2").reply <- nil // the paused process resumed
	eventually(t, "n2 is healthy", func() bool {
		n, _ := m.Node("n2")
		return n.State == StateHealthy && n.ConsecutiveFailures == 0
	})

	m.Close()
	for v := range m.Verdicts() {
		t.Fatalf("unexpected verdict %+v", v)
	}
}

func TestMonitorGossipDeadCountsAndVerdictsQueueForASlowReader(t *testing.T) {
	clock := NewManualClock(t0)
	prober := newScriptedProber()
	cfg := monitorConfig()
	cfg.FailureThreshold = 1
	m := NewMonitor(cfg, prober, clock)
	defer m.Close()

	// Nobody reads verdicts while three nodes die; the monitor must keep
	// going and deliver them all, in order.
	m.Observe(Dead("n1", time.Time{}))
	m.Observe(Dead("n2", time.Time{}))
	m.Observe(Dead("n3", time.Time{}))
	eventually(t, "three failed nodes", func() bool { return m.Counters().FailedVerdicts == 3 })
	for _, want := range []string{"n1", "n2", "n3"} {
		if v := nextVerdict(t, m); v.Node != want || v.Kind != VerdictFailed {
			t.Fatalf("verdict %+v, want %s failed", v, want)
		}
	}
}

func TestMonitorEndsHoldDownOnTick(t *testing.T) {
	clock := NewManualClock(t0)
	cfg := monitorConfig() // hold-down base: 2 intervals
	cfg.FailureThreshold = 1
	cfg.RecoverThreshold = 1
	prober := newScriptedProber()
	m := NewMonitor(cfg, prober, clock)
	defer m.Close()

	// A failed node is probed; the probe answers once it is back.
	m.Observe(Dead("n1", time.Time{}))
	nextVerdict(t, m)
	m.Observe(Alive("n1", time.Time{}))
	prober.expectProbe(t, "n1").reply <- nil
	if v := nextVerdict(t, m); v.Kind != VerdictRecovered {
		t.Fatalf("first recovery %+v, want recovered", v)
	}
	m.Observe(Dead("n1", time.Time{}))
	nextVerdict(t, m)
	m.Observe(Alive("n1", time.Time{}))
	prober.expectProbe(t, "n1").reply <- nil
	eventually(t, "n1 held down", func() bool {
		n, _ := m.Node("n1")
		return n.State == StateHeldDown && n.HeldDownUntil.Equal(t0.Add(cfg.HoldDownBase))
	})

	clock.Advance(cfg.HoldDownBase)
	v := nextVerdict(t, m)
	if v.Kind != VerdictRecovered || v.Node != "n1" || !v.At.Equal(t0.Add(cfg.HoldDownBase)) {
		t.Fatalf("verdict %+v, want n1 recovered at the end of its hold-down", v)
	}
}

func TestMonitorTreatsALateAnswerAsAFailure(t *testing.T) {
	clock := NewManualClock(t0)
	cfg := monitorConfig()
	cfg.ProbeTimeout = 20 * time.Millisecond // real time: the context's deadline
	// This prober ignores its deadline's meaning and says "fine" after it.
	late := ProberFunc(func(ctx context.Context, node string) error {
		<-ctx.Done()
		return nil
	})
	m := NewMonitor(cfg, late, clock)
	defer m.Close()

	m.Observe(Suspect("n2", time.Time{}))
	eventually(t, "the late answer counted as a failure", func() bool { return failures(m, "n2") == 1 })
}

// A probe whose end this monitor read long after its deadline (the
// process was starved of CPU) is inconclusive; the next probe gets a
// longer timeout.
func TestMonitorDoesNotCountAProbeItWasTooStarvedToRead(t *testing.T) {
	clock := NewManualClock(t0)
	cfg := monitorConfig()
	cfg.ProbeTimeout = 20 * time.Millisecond // real time: the context's deadline
	var mu sync.Mutex
	var timeouts []time.Duration
	// This prober stands for a process that was not scheduled for a
	// second around its probe's deadline: by the monitor's clock, the probe
	// ends a second after it began.
	starvedProber := ProberFunc(func(ctx context.Context, node string) error {
		deadline, _ := ctx.Deadline()
		mu.Lock()
		timeouts = append(timeouts, time.Until(deadline))
		mu.Unlock()
		<-ctx.Done()
		clock.Advance(time.Second)
		return ctx.Err()
	})
	m := NewMonitor(cfg, starvedProber, clock)
	defer m.Close()

	m.Observe(Suspect("n2", time.Time{}))
	eventually(t, "the starved probe recorded", func() bool { return m.Counters().InconclusiveProbes == 1 })
	if f := failures(m, "n2"); f != 0 {
		t.Fatalf("n2 has %d failures after a probe this agent was too starved to read, want 0", f)
	}
	if got := m.Counters().ProbeTimeout; got != 2*cfg.ProbeTimeout {
		t.Fatalf("probe timeout %v after a starved probe, want %v", got, 2*cfg.ProbeTimeout)
	}
	clock.Advance(cfg.ProbeInterval)
	eventually(t, "the second starved probe recorded", func() bool { return m.Counters().InconclusiveProbes == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(timeouts) != 2 || timeouts[1] <= cfg.ProbeTimeout {
		t.Fatalf("probe timeouts %v: want the second longer than %v", timeouts, cfg.ProbeTimeout)
	}
}

func TestMonitorCloseCancelsProbesInFlightAndIsIdempotent(t *testing.T) {
	clock := NewManualClock(t0)
	prober := newScriptedProber()
	m := NewMonitor(monitorConfig(), prober, clock)

	m.Observe(Suspect("n2", time.Time{}))
	m.Observe(Suspect("n3", time.Time{}))
	// Both probes run at once, in no particular order.
	var calls []probeCall
	probed := map[string]bool{}
	for range 2 {
		select {
		case c := <-prober.calls:
			calls = append(calls, c)
			probed[c.node] = true
		case <-time.After(5 * time.Second):
			t.Fatal("fewer than two probes within 5s")
		}
	}
	if !probed["n2"] || !probed["n3"] {
		t.Fatalf("probed %v, want n2 and n3", probed)
	}

	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); m.Close() }()
	}
	wg.Wait()
	for _, c := range calls {
		if !errors.Is(c.ctx.Err(), context.Canceled) {
			t.Fatalf("probe of %s: context %v after Close, want cancelled", c.node, c.ctx.Err())
		}
	}
	if clock.Tickers() != 0 {
		t.Fatalf("%d tickers still running after Close", clock.Tickers())
	}
	if _, open := <-m.Verdicts(); open {
		t.Fatal("verdicts channel still open after Close")
	}
	m.Observe(Suspect("n4", time.Time{})) // after Close: ignored, no panic
	m.Close()
}

func TestMonitorObserveIsSafeFromManyGoroutines(t *testing.T) {
	clock := NewManualClock(t0)
	cfg := monitorConfig()
	alwaysOK := ProberFunc(func(context.Context, string) error { return nil })
	m := NewMonitor(cfg, alwaysOK, clock)
	defer m.Close()

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				node := fmt.Sprintf("n%d-%d", g, i)
				m.Observe(Alive(node, time.Time{}))
				m.Observe(Suspect(node, time.Time{}))
			}
		}()
	}
	wg.Wait()
	// Every suspicion is probed, the probe succeeds, and each node ends
	// healthy with no verdict.
	eventually(t, "400 suspicions probed and cleared", func() bool {
		c := m.Counters()
		return c.Suspicions == 400 && c.SucceededProbes == 400
	})
	for _, n := range m.Snapshot() {
		if n.State != StateHealthy {
			t.Fatalf("%s is %s, want healthy", n.Node, n.State)
		}
	}
	if c := m.Counters(); c.FailedVerdicts != 0 {
		t.Fatalf("counters %+v: no verdict expected", c)
	}
}

func TestNewMonitorFillsZeroTimingsAndPanicsOnBadConfig(t *testing.T) {
	m := NewMonitor(Config{}, ProberFunc(func(context.Context, string) error { return nil }), NewManualClock(t0))
	got := m.Config()
	m.Close()
	def := DefaultConfig()
	if got.ProbeInterval != def.ProbeInterval || got.ProbeTimeout != def.ProbeTimeout || got.FailureThreshold != def.FailureThreshold || got.HoldDownBase != 0 {
		t.Fatalf("config %+v: want default timings and damping left off", got)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("NewMonitor accepted a timeout longer than the interval")
		}
	}()
	NewMonitor(Config{ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second}, nil, NewManualClock(t0))
}
