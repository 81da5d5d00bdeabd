package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// AppProbe checks the co-located app once; nil means healthy. It must
// return when ctx is done.
type AppProbe func(ctx context.Context) error

// AppConfig tunes the app health checks.
type AppConfig struct {
	// Interval is how often the app is checked. The agent uses the
	// profile's ProbeInterval: the app is as close as it gets.
	Interval time.Duration
	// Timeout bounds one check; a slower answer is a failure. Shorter than
	// Interval.
	Timeout time.Duration
	// FailureThreshold is the number of consecutive failed checks after
	// which the app is unhealthy (and its node must not hold primaries).
	FailureThreshold int
	// RecoverThreshold is the number of consecutive successful checks after
	// which an unhealthy app is healthy again. 1 (the default) gives
	// primaries back as soon as the app answers; raise it for an app that
	// answers before it is ready to serve.
	RecoverThreshold int
}

// AppConfigFrom derives the app checks' settings from the node probes':
// same interval, timeout and failure threshold, RecoverThreshold 1.
func AppConfigFrom(cfg Config) AppConfig {
	return AppConfig{
		Interval:         cfg.ProbeInterval,
		Timeout:          cfg.ProbeTimeout,
		FailureThreshold: cfg.FailureThreshold,
		RecoverThreshold: 1,
	}
}

// DefaultAppConfig is AppConfigFrom(DefaultConfig()).
func DefaultAppConfig() AppConfig { return AppConfigFrom(DefaultConfig()) }

// Validate reports the first field that cannot work.
func (c AppConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("%w: app check interval must be positive, got %v", ErrInvalidConfig, c.Interval)
	case c.Timeout <= 0 || c.Timeout >= c.Interval:
		return fmt.Errorf("%w: app check timeout %v must be positive and shorter than the interval %v", ErrInvalidConfig, c.Timeout, c.Interval)
	case c.FailureThreshold < 1:
		return fmt.Errorf("%w: app failure threshold must be at least 1, got %d", ErrInvalidConfig, c.FailureThreshold)
	case c.RecoverThreshold < 1:
		return fmt.Errorf("%w: app recover threshold must be at least 1, got %d", ErrInvalidConfig, c.RecoverThreshold)
	}
	return nil
}

// AppStatus is the app's health as last decided.
type AppStatus struct {
	// Healthy is false once FailureThreshold checks in a row failed, true
	// again after RecoverThreshold successes in a row. An app is presumed
	// healthy until proven otherwise, so a node does not start by shedding
	// primaries it never had.
	Healthy bool `json:"healthy"`
	// ConsecutiveFailures is the current run of failed checks.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// ConsecutiveSuccesses is the current run of successful checks.
	ConsecutiveSuccesses int `json:"consecutive_successes"`
	// Checks counts the checks done.
	Checks int `json:"checks"`
	// LastError is the last failed check's error, "" if none yet.
	LastError string `json:"last_error,omitempty"`
	// LastChange is when Healthy last changed (zero if it never did).
	LastChange time.Time `json:"last_change"`
}

// AppTransition is a change of the app's health.
type AppTransition struct {
	// Healthy is the new state.
	Healthy bool
	// At is when the deciding check finished.
	At time.Time
	// Reason explains the change, for logs and events.
	Reason string
}

// AppHealth is the pure core of the app checks: it counts results and
// decides transitions, with time as an argument. Not safe for concurrent
// use.
type AppHealth struct {
	cfg    AppConfig
	status AppStatus
}

// NewAppHealth returns a core that presumes the app healthy.
func NewAppHealth(cfg AppConfig) *AppHealth {
	return &AppHealth{cfg: cfg, status: AppStatus{Healthy: true}}
}

// Record applies one check result (err nil: healthy) and returns the
// transition it causes, if any.
func (h *AppHealth) Record(err error, at time.Time) (AppTransition, bool) {
	s := &h.status
	s.Checks++
	if err != nil {
		s.ConsecutiveFailures++
		s.ConsecutiveSuccesses = 0
		s.LastError = err.Error()
		if s.Healthy && s.ConsecutiveFailures >= h.cfg.FailureThreshold {
			s.Healthy = false
			s.LastChange = at
			return AppTransition{Healthy: false, At: at,
				Reason: fmt.Sprintf("%d consecutive failed checks; last: %v", s.ConsecutiveFailures, err)}, true
		}
		return AppTransition{}, false
	}
	s.ConsecutiveSuccesses++
	s.ConsecutiveFailures = 0
	if !s.Healthy && s.ConsecutiveSuccesses >= h.cfg.RecoverThreshold {
		s.Healthy = true
		s.LastChange = at
		return AppTransition{Healthy: true, At: at,
			Reason: fmt.Sprintf("%d consecutive successful checks", s.ConsecutiveSuccesses)}, true
	}
	return AppTransition{}, false
}

// Status returns the current status.
func (h *AppHealth) Status() AppStatus { return h.status }

// AppChecker checks the co-located app every Interval and reports health
// transitions on a channel. It owns one goroutine, which runs each check
// itself (one check at a time; a check that overruns makes the next tick
// wait). Close stops it.
type AppChecker struct {
	cfg   AppConfig
	probe AppProbe
	clock Clock

	ticker Ticker

	mu   sync.Mutex // guards core
	core *AppHealth

	transitions chan AppTransition
	ctx         context.Context
	cancel      context.CancelFunc
	loopDone    chan struct{}
}

// NewAppChecker starts checking: the first check runs at once, then one
// every Interval. cfg must pass Validate, otherwise NewAppChecker panics (the
// agent validates its configuration at start-up). A nil clock is the
// system clock.
func NewAppChecker(cfg AppConfig, probe AppProbe, clock Clock) *AppChecker {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if probe == nil {
		panic("health: nil AppProbe")
	}
	if clock == nil {
		clock = SystemClock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &AppChecker{
		cfg:         cfg,
		probe:       probe,
		clock:       clock,
		ticker:      clock.NewTicker(cfg.Interval),
		core:        NewAppHealth(cfg),
		transitions: make(chan AppTransition),
		ctx:         ctx,
		cancel:      cancel,
		loopDone:    make(chan struct{}),
	}
	go a.loop()
	return a
}

// Transitions returns the channel health changes are delivered on, in
// order. They wait in an unbounded queue until read. The channel is closed
// when Close has stopped the checker.
func (a *AppChecker) Transitions() <-chan AppTransition { return a.transitions }

// Status returns the app's current health.
func (a *AppChecker) Status() AppStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.core.Status()
}

// Close stops the checker, cancelling a check in flight, and waits for its
// goroutine. Safe to call more than once.
func (a *AppChecker) Close() {
	a.cancel()
	<-a.loopDone
}

func (a *AppChecker) loop() {
	defer close(a.loopDone)
	defer close(a.transitions)
	defer a.ticker.Stop()

	var pending []AppTransition
	pending = a.check(pending)
	for {
		var out chan<- AppTransition
		var next AppTransition
		if len(pending) > 0 {
			out, next = a.transitions, pending[0]
		}
		select {
		case <-a.ctx.Done():
			return
		case out <- next:
			pending = pending[1:]
		case <-a.ticker.C():
			pending = a.check(pending)
		}
	}
}

func (a *AppChecker) check(pending []AppTransition) []AppTransition {
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.Timeout)
	err := a.probe(ctx)
	late := ctx.Err()
	cancel()
	if a.ctx.Err() != nil {
		return pending // closing: a cancelled check says nothing about the app
	}
	if late != nil && err == nil {
		err = ErrProbeTimeout
	} else if late != nil && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrProbeTimeout, err)
	}
	a.mu.Lock()
	tr, changed := a.core.Record(err, a.clock.Now())
	a.mu.Unlock()
	if changed {
		pending = append(pending, tr)
	}
	return pending
}
