package localcluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultInterval is how often Eventually polls.
const DefaultInterval = 100 * time.Millisecond

// Stop wraps an error that no amount of waiting will cure (an agent that
// exited, say): Poll returns it at once.
type Stop struct{ Err error }

func (s Stop) Error() string { return s.Err.Error() }
func (s Stop) Unwrap() error { return s.Err }

// Poll calls cond every interval until it returns nil, and returns the time
// that took. It gives up with cond's last error once timeout has passed,
// with ctx's error once ctx ends, and at once with an error wrapped in
// Stop.
func Poll(ctx context.Context, interval, timeout time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		if stop := (Stop{}); errors.As(err, &stop) {
			return time.Since(start), err
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("not true after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Eventually polls cond every DefaultInterval until it returns nil and
// returns the time that took; it fails t, saying what was awaited, if
// timeout passes first.
func Eventually(t TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	return EventuallyEvery(t, DefaultInterval, timeout, what, cond)
}

// EventuallyEvery is Eventually polling every interval.
func EventuallyEvery(t TB, interval, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	d, err := Poll(context.Background(), interval, timeout, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return d
}
