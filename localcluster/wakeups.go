package localcluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Context switches: how often a process's threads gave up a CPU, read from
// /proc. An idle agent's CPU is mostly the cost of waking up (a timer, a
// packet), so its switches count its wake-ups more exactly than its CPU
// time, whose 10 ms ticks make small differences noise.

// ContextSwitches is how many times the threads of the current run have
// given up a CPU so far (voluntary and involuntary, summed over the
// threads that still run; Go seldom ends a thread).
func (p *Process) ContextSwitches() (int64, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, errors.New("localcluster: the process has not started")
	}
	return ProcessContextSwitches(pid)
}

// ProcessContextSwitches sums voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches of every thread of process pid.
func ProcessContextSwitches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return 0, err
	}
	if len(tasks) == 0 {
		return 0, fmt.Errorf("localcluster: no threads of process %d in /proc", pid)
	}
	var total int64
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread ended meanwhile
			}
			return 0, err
		}
		n, err := parseStatusSwitches(string(b))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", task, err)
		}
		total += n
	}
	return total, nil
}

// parseStatusSwitches reads the two context-switch counts of a
// /proc/PID/task/TID/status file.
func parseStatusSwitches(status string) (int64, error) {
	var total int64
	found := 0
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "voluntary_ctxt_switches" && key != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("localcluster: %s %q: %w", key, value, err)
		}
		total += n
		found++
	}
	if found != 2 {
		return 0, errors.New("localcluster: no context-switch counts in the status file")
	}
	return total, nil
}
