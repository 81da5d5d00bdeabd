package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
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

// A supervised agent that exits 0 (a planned restart) is started again
// with the same settings; one that exits with an error stays down, and a
// Stop is final.
func TestASupervisedAgentIsStartedAgainAfterExitingZero(t *testing.T) {
	dir := t.TempDir()
	// A stand-in for the agent binary: runs 1 and 2 exit 0 at once (a
	// planned restart), run 3 stays up, run 4 would exit 1.
	bin := filepath.Join(dir, "agent")
	script := "#!/bin/sh\ncount=" + filepath.Join(dir, "runs") + "\n" +
		"n=$(cat $count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $count\n" +
		"echo run $n \"$@\"\n" +
		"case $n in 1|2) exit 0;; 3) exec sleep 60;; *) exit 1;; esac\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := NewAgent(bin, "n1", filepath.Join(dir, "n1"), Placement{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Supervise("-extra"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "two restarts, then a run that stays up", func() error {
		if n, err := a.Restarts(); err != nil || n != 2 || !a.Running() {
			return fmt.Errorf("restarts %d (%v), running %v", n, err, a.Running())
		}
		return nil
	})
	if !strings.Contains(a.Log(), "run 3") || !strings.Contains(a.Log(), "-node-id n1") || !strings.Contains(a.Log(), "-extra") {
		t.Fatalf("the third run did not get the same settings:\n%s", a.Log())
	}
	if err := a.Stop(5 * time.Second); err == nil {
		t.Fatal("a sleeper ended by SIGTERM reported exit status 0")
	}
	if a.Running() {
		t.Fatal("the agent was started again after Stop")
	}

	// Exit status 1: not a planned restart, it stays down.
	if err := a.Supervise(); err != nil {
		t.Fatal(err)
	}
	if err, ok := a.WaitExit(5 * time.Second); !ok || err == nil {
		t.Fatalf("run 4 should exit 1: %v, %v", err, ok)
	}
	select {
	case <-a.sup.done:
	case <-time.After(5 * time.Second):
		t.Fatal("supervision goes on after an exit with status 1")
	}
	if n, _ := a.Restarts(); n != 0 || a.Running() {
		t.Fatalf("%d restarts after an exit with status 1 (running %v)", n, a.Running())
	}
	a.Unsupervise()
}

func TestCPUTimeIsReadFromProcStatPastACommandNameWithSpaces(t *testing.T) {
	stat := "4242 (agent (x) y) S 1 4242 4242 0 -1 4194560 1220 0 0 0 37 13 0 0 20 0 9 0 123 0 0"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 500*time.Millisecond {
		t.Fatalf("utime 37 + stime 13 ticks = %v, want 500ms", got)
	}
	if _, err := parseStatCPU("4242 (agent) S 1 2"); err == nil {
		t.Fatal("a truncated stat line was accepted")
	}
	own, err := ProcessCPUTime(os.Getpid())
	if err != nil || own < 0 {
		t.Fatalf("this test's own CPU time: %v, %v", own, err)
	}
}

func TestAReferenceMembersEventsAreReadFromItsJSONLinesAmongItsLogs(t *testing.T) {
	r := &ReferenceMember{Name: "node1"}
	// The reference program's output: a log line, two events, a log line
	// that starts like JSON but is not an event, and a last event line not
	// yet finished.
	out := `2026/11/29 17:41:46 [INFO] serf: EventMemberJoin: node1 127.0.0.1
{"unix_nano":1000,"node":"node1","event":"member-join","member":"node2"}
{"unix_nano":2000,"node":"node1","event":"member-failed","member":"node2"}
{"not":"an event"}
{"unix_nano":3000,"node":"node1","ev`
	if err := r.start(r.Name, exec.Command("printf", "%s", out), filepath.Join(t.TempDir(), "node1.log")); err != nil {
		t.Fatal(err)
	}
	if err, _ := r.WaitExit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	got := r.Events()
	want := []ReferenceEvent{
		{UnixNano: 1000, Node: "node1", Event: "member-join", Member: "node2"},
		{UnixNano: 2000, Node: "node1", Event: "member-failed", Member: "node2"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	if !got[1].Time().Equal(time.Unix(0, 2000)) {
		t.Fatalf("event time %s, want 2000 ns after the epoch", got[1].Time())
	}
}

func TestContextSwitchesAreSummedFromEveryThreadsStatus(t *testing.T) {
	status := "Name:\tagent\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
	got, err := parseStatusSwitches(status)
	if err != nil || got != 127 {
		t.Fatalf("120 + 7 switches read as %d, %v", got, err)
	}
	if _, err := parseStatusSwitches("Name:\tagent\nvoluntary_ctxt_switches:\t120\n"); err == nil {
		t.Fatal("a status file with one count of two was accepted")
	}
	before, err := ProcessContextSwitches(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Sleeping gives up the CPU: at least one more switch.
	time.Sleep(10 * time.Millisecond)
	after, err := ProcessContextSwitches(os.Getpid())
	if err != nil || after <= before {
		t.Fatalf("this test's own switches: %d, then %d (%v)", before, after, err)
	}
}
