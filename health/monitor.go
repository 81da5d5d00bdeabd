package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Prober checks one peer agent directly. The agent implements it with a GET
// on the peer's /v1/health (see CheckHTTP and ProberFunc). Probe is called
// from its own goroutine, possibly for several nodes at once, and must
// return when ctx is done; ctx carries the ProbeTimeout deadline.
type Prober interface {
	Probe(ctx context.Context, node string) error
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, node string) error

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context, node string) error { return f(ctx, node) }

// ErrProbeTimeout is the error recorded for a probe that returned after its
// deadline, whatever it returned: an answer slower than ProbeTimeout is a
// failure by definition.
var ErrProbeTimeout = errors.New("health: probe timed out")

// ErrProberStarved is the error recorded for a probe that ran out while
// this process was itself starved: it read the probe's end more than half
// a timeout after its deadline. Such a probe is inconclusive, not a
// failure: the answer may have been waiting unread. See
// Detector.ProbeTimeout.
var ErrProberStarved = errors.New("health: probe ran out while this agent was starved of CPU")

// Monitor runs a Detector against the world: it takes observations from any
// goroutine, probes suspect nodes every ProbeInterval through a Prober with
// ProbeTimeout, ends hold-downs on time, and delivers verdicts on a channel.
//
// It owns one loop goroutine and one goroutine per probe in flight (at most
// one per node). Close stops them all and waits for them.
type Monitor struct {
	prober Prober
	clock  Clock
	ticker Ticker

	mu     sync.Mutex // guards det, queue and closed
	det    *Detector
	queue  []Observation
	closed bool

	wake     chan struct{} // a signal that queue is non-empty; capacity 1
	results  chan Observation
	verdicts chan Verdict

	ctx       context.Context // cancelled by Close; parent of every probe
	cancel    context.CancelFunc
	closeOnce sync.Once
	loopDone  chan struct{}
	probes    sync.WaitGroup
}

// NewMonitor starts a monitor. A zero ProbeInterval, ProbeTimeout or
// FailureThreshold is taken from DefaultConfig; after that cfg must pass
// Validate (the agent validates its
// merged configuration at start-up), otherwise NewMonitor panics, as
// time.NewTicker does for a bad interval; a nil prober panics too. A nil
// clock is the system clock.
//
// The loop ticks every quarter of RecoverInterval (ProbeInterval unless a
// profile spaces recovery probes closer): a probe falls due at most a
// quarter interval late, and a hold-down ends at most a quarter interval
// late.
func NewMonitor(cfg Config, prober Prober, clock Clock) *Monitor {
	cfg = withDefaults(cfg)
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if prober == nil {
		panic("health: nil Prober")
	}
	if clock == nil {
		clock = SystemClock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		prober:   prober,
		clock:    clock,
		det:      NewDetector(cfg),
		wake:     make(chan struct{}, 1),
		results:  make(chan Observation),
		verdicts: make(chan Verdict),
		ctx:      ctx,
		cancel:   cancel,
		loopDone: make(chan struct{}),
	}
	// The ticker exists before NewMonitor returns, so that a test's first
	// ManualClock.Advance cannot be missed.
	m.ticker = clock.NewTicker(max(cfg.recoverInterval()/4, 1)) // never longer than ProbeInterval
	go m.loop()
	return m
}

// withDefaults fills the fields where zero cannot work (interval, timeout,
// thresholds) from DefaultConfig. Zero flap settings stay zero: they turn
// damping off.
func withDefaults(cfg Config) Config {
	def := DefaultConfig()
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = def.ProbeInterval
		if cfg.ProbeTimeout == 0 {
			cfg.ProbeTimeout = def.ProbeTimeout
		}
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = min(def.ProbeTimeout, cfg.ProbeInterval/2)
	}
	if cfg.FailureThreshold == 0 {
		cfg.FailureThreshold = def.FailureThreshold
	}
	if cfg.RecoverThreshold == 0 {
		cfg.RecoverThreshold = def.RecoverThreshold
	}
	return cfg
}

// Config returns the configuration the monitor runs with, defaults filled.
func (m *Monitor) Config() Config {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.det.Config()
}

// Observe queues an observation. It never blocks and never drops one (a
// gossip "dead" must not be lost to a full buffer); it may be called from
// any goroutine, including memberlist's delegates. A zero At is set to the
// clock's time now. After Close it does nothing.
func (m *Monitor) Observe(ev Observation) {
	if ev.At.IsZero() {
		ev.At = m.clock.Now()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.queue = append(m.queue, ev)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default: // a wake-up is already pending; it will drain the whole queue
	}
}

// Verdicts returns the channel verdicts are delivered on, in the order they
// were decided. Verdicts wait in an unbounded queue until read, so a slow
// reader delays them but never blocks probing. The channel is closed when
// Close has stopped the monitor; verdicts not read by then are dropped.
func (m *Monitor) Verdicts() <-chan Verdict { return m.verdicts }

// Snapshot returns every known node's health, ordered by node ID.
func (m *Monitor) Snapshot() []NodeHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.det.Snapshot()
}

// Node returns one node's health; false if the monitor does not know it.
func (m *Monitor) Node(node string) (NodeHealth, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.det.Node(node)
}

// Counters returns the totals since the monitor started, for metrics.
func (m *Monitor) Counters() Counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.det.Counters()
}

// Close stops the loop, cancels the probes in flight, waits for every
// goroutine the monitor started, and closes the Verdicts channel. It is safe
// to call more than once and from several goroutines.
func (m *Monitor) Close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.queue = nil
		m.mu.Unlock()
		m.cancel()
	})
	<-m.loopDone
}

func (m *Monitor) loop() {
	defer close(m.loopDone)
	defer close(m.verdicts)
	defer m.probes.Wait()
	defer m.ticker.Stop()

	inFlight := make(map[string]bool)
	var pending []Verdict
	for {
		var out chan<- Verdict
		var next Verdict
		if len(pending) > 0 {
			out, next = m.verdicts, pending[0]
		}
		select {
		case <-m.ctx.Done():
			return
		case out <- next:
			pending[0] = Verdict{}
			pending = pending[1:]
		case <-m.wake:
			m.mu.Lock()
			queue := m.queue
			m.queue = nil
			for _, ev := range queue {
				pending = append(pending, m.det.Observe(ev)...)
			}
			due, timeout := m.det.Due(m.clock.Now()), m.det.ProbeTimeout()
			m.mu.Unlock()
			m.startProbes(due, timeout, inFlight)
		case ev := <-m.results:
			delete(inFlight, ev.Node)
			m.mu.Lock()
			pending = append(pending, m.det.Observe(ev)...)
			m.mu.Unlock()
		case <-m.ticker.C():
			now := m.clock.Now()
			m.mu.Lock()
			pending = append(pending, m.det.Tick(now)...)
			due, timeout := m.det.Due(now), m.det.ProbeTimeout()
			m.mu.Unlock()
			m.startProbes(due, timeout, inFlight)
		}
	}
}

// startProbes starts one probe goroutine per due node that has none in
// flight, each with timeout (the detector's ProbeTimeout, read with due).
// A node still in flight skips this turn: ProbeTimeout < ProbeInterval
// makes that rare (while the timeout is stretched, a node waits for its
// probe to end), and two overlapping probes would count one outage twice.
func (m *Monitor) startProbes(due []string, timeout time.Duration, inFlight map[string]bool) {
	for _, node := range due {
		if inFlight[node] {
			continue
		}
		inFlight[node] = true
		m.probes.Add(1)
		go m.probe(node, timeout)
	}
}

func (m *Monitor) probe(node string, timeout time.Duration) {
	defer m.probes.Done()
	start := m.clock.Now()
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	err := m.prober.Probe(ctx, node)
	late := ctx.Err()
	cancel()
	if m.ctx.Err() != nil {
		return // closing: nobody reads results any more
	}
	end := m.clock.Now()
	switch {
	case late != nil && starved(end.Sub(start), timeout):
		err = fmt.Errorf("%w: it ended %v after it began, its timeout was %v", ErrProberStarved, end.Sub(start).Round(time.Millisecond), timeout)
	case late != nil && err == nil:
		err = ErrProbeTimeout
	case late != nil && !errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: %w", ErrProbeTimeout, err)
	}
	ev := ProbeResult(node, err, end)
	select {
	case m.results <- ev:
	case <-m.ctx.Done():
	}
}

// starved says whether a probe that ran out took so much longer than its
// timeout that this process, not the peer, is the likelier reason: its
// end was read more than half a timeout after the deadline. A process
// that runs on time reads a deadline within a few milliseconds of it.
func starved(took, timeout time.Duration) bool {
	return took > timeout+timeout/2
}
