package localcluster

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// supervision is the restart-on-exit of one agent: the test harness as the
// agent's service manager.
type supervision struct {
	mu       sync.Mutex
	stop     chan struct{}
	done     chan struct{}
	restarts int
	err      error
}

// Supervise starts the agent (Start with args; a run under way is kept)
// and starts it again, with the same settings, every time a run exits
// with status 0: the status of
// a planned restart (agent restart, a rolling restart, SIGTERM with
// -on-sigterm restart), which systemd's Restart=always or Kubernetes'
// restartPolicy Always turn into a new run. A run that exits otherwise (a
// crash, a kill) is not started again. Unsupervise ends it; Stop and
// StopWith end it before they stop the agent, so that a stop is final.
func (a *Agent) Supervise(args ...string) error {
	a.Unsupervise()
	if !a.Running() {
		if err := a.Start(args...); err != nil {
			return err
		}
	}
	s := &supervision{stop: make(chan struct{}), done: make(chan struct{})}
	a.supMu.Lock()
	a.sup = s
	a.supMu.Unlock()
	go a.supervise(s, args)
	return nil
}

func (a *Agent) supervise(s *supervision, args []string) {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-a.Exited():
		}
		if a.ExitErr() != nil {
			return // not a planned restart: a crash or a kill stays down
		}
		select {
		case <-s.stop:
			return
		default:
		}
		err := a.Start(args...)
		s.mu.Lock()
		if err != nil {
			s.err = fmt.Errorf("restarting %s after it exited 0: %w", a.ID, err)
		} else {
			s.restarts++
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Unsupervise stops restarting the agent on exit (the current run goes
// on) and waits for the supervisor to end.
func (a *Agent) Unsupervise() {
	a.supMu.Lock()
	s := a.sup
	a.sup = nil
	a.supMu.Unlock()
	if s == nil {
		return
	}
	close(s.stop)
	<-s.done
}

// Restarts is how many times the supervisor started the agent again, and
// the error that ended supervision, if any.
func (a *Agent) Restarts() (int, error) {
	a.supMu.Lock()
	s := a.sup
	a.supMu.Unlock()
	if s == nil {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts, s.err
}

// Stop ends supervision, then stops the agent as Process.Stop does.
func (a *Agent) Stop(timeout time.Duration) error {
	a.Unsupervise()
	return a.Process.Stop(timeout)
}

// StopWith ends supervision, then stops the agent as Process.StopWith
// does.
func (a *Agent) StopWith(sig syscall.Signal) error {
	a.Unsupervise()
	return a.Process.StopWith(sig)
}
