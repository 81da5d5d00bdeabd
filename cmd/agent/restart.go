package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/steward-dev/steward/agent"
)

// The client sub-commands of planned restarts: `agent restart` and
// `agent rolling-restart`.

// restartFollowFor bounds how long the commands follow the progress.
const (
	restartFollowFor = 10 * time.Minute
	rollingFollowFor = 2 * time.Hour
)

// cmdRestart is `agent restart`: a planned restart of the agent at
// -http-addr. It hands its primaries over, keeps its copies, and exits 0
// for its supervisor to start it again.
func cmdRestart(args []string, stdout, stderr io.Writer) error {
	cf, err := parseClientFlags("restart", args, stderr)
	if err != nil {
		return err
	}
	var p agent.RestartProgress
	if err := cf.post("/v1/restart", map[string]bool{}, &p); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "marked restarting (grace %s): %d primaries handed over\n", p.Grace, p.PrimariesHandedOver)
	last := ""
	for deadline := time.Now().Add(restartFollowFor); time.Now().Before(deadline); {
		if line := string(p.Phase); line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		switch p.Phase {
		case agent.RestartDone:
			fmt.Fprintln(stdout, "the agent exits now; its supervisor starts it again")
			return nil
		case agent.RestartFailed:
			return fmt.Errorf("restart failed: %s", p.Error)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := cf.get("/v1/restart", &p); err != nil {
			fmt.Fprintln(stdout, "the agent has exited; its supervisor starts it again")
			return nil
		}
	}
	return errors.New("restart: no end in sight after 10 minutes; see agent status")
}

// cmdRollingRestart is `agent rolling-restart [-max-unavailable N]`: the
// leader restarts every member, one after the other; the command follows
// the progress until it ends (-detach: returns at once).
func cmdRollingRestart(args []string, stdout, stderr io.Writer) error {
	var maxUnavailable int
	var detach bool
	cf, pos, err := parseOperatorFlags("rolling-restart", args, stderr, func(fs *flag.FlagSet) {
		fs.IntVar(&maxUnavailable, "max-unavailable", 1, "how many members may be away at once")
		fs.BoolVar(&detach, "detach", false, "start it and return, without following the progress")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("rolling-restart: unexpected argument %q (flags only)", pos[0])
	}
	if maxUnavailable < 1 {
		return usagef("rolling-restart: -max-unavailable must be at least 1, got %d", maxUnavailable)
	}
	var v agent.RollingView
	if err := cf.post("/v1/rolling-restart?max_unavailable="+strconv.Itoa(maxUnavailable), map[string]bool{}, &v); err != nil {
		return err
	}
	fmt.Fprintln(stdout, v.Summary)
	if detach {
		return nil
	}
	last := v.Summary
	for deadline := time.Now().Add(rollingFollowFor); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		if _, err := cf.get("/v1/rolling-restart", &v); err != nil {
			continue // this agent may be the one restarting: ask again
		}
		if v.Summary != last {
			fmt.Fprintln(stdout, v.Summary)
			last = v.Summary
		}
		switch v.State {
		case "done":
			return nil
		case "failed":
			return fmt.Errorf("rolling restart stopped: %s", v.Error)
		}
	}
	return errors.New("rolling-restart: still running after 2 hours; follow it with agent status")
}
