package localcluster

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePortNeverHandsOutAPortTwiceAndStaysBelowTheEphemeralRange(t *testing.T) {
	_, high := portRange()
	seen := map[int]bool{}
	for i := 0; i < 50; i++ {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		if port >= high {
			t.Fatalf("port %d is in the ephemeral range (from %d)", port, high)
		}
		if !bindable(port) {
			t.Fatalf("port %d is not free", port)
		}
		seen[port] = true
	}
}

func TestPollReturnsOnceTheConditionHoldsAndGivesUpAtTheDeadline(t *testing.T) {
	calls := 0
	if _, err := Poll(context.Background(), time.Millisecond, time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("Poll: %v after %d calls, want nil after 3", err, calls)
	}
	_, err := Poll(context.Background(), time.Millisecond, 20*time.Millisecond, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Poll past its deadline: %v, want the condition's last error", err)
	}
}

func TestPollStopsAtOnceOnAStopError(t *testing.T) {
	calls := 0
	cure := errors.New("the agent exited")
	_, err := Poll(context.Background(), time.Millisecond, time.Minute, func() error {
		calls++
		return Stop{Err: cure}
	})
	if !errors.Is(err, cure) || calls != 1 {
		t.Fatalf("Poll with a Stop error: %v after %d calls, want it at once", err, calls)
	}
}

func TestAProcessIsLoggedSignalledByPIDAndRestartable(t *testing.T) {
	log := filepath.Join(t.TempDir(), "sleeper.log")
	var p Process
	for run := 1; run <= 2; run++ {
		if err := p.start("sleeper", exec.Command("sh", "-c", "echo started; exec sleep 60"), log); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 5*time.Second, "the sleeper's output", func() error {
			if !strings.Contains(p.Log(), "started") {
				return errors.New("no output yet")
			}
			return nil
		})
		if !p.Running() {
			t.Fatal("the sleeper is not running")
		}
		if err := p.StopWith(syscall.SIGTERM); err == nil {
			t.Fatal("a sleeper ended by SIGTERM reported exit status 0")
		}
		if p.Running() {
			t.Fatal("still running after StopWith")
		}
	}
	if got := strings.Count(p.Tail(10), "started"); got != 2 {
		t.Fatalf("the log file has %d runs, want 2:\n%s", got, p.Tail(10))
	}
	p.Kill() // after the exit: nothing to do, must not block
}
