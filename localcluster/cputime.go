package localcluster

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The CPU a process has used, read from /proc: on a machine shared with
// other work, wall-clock figures are noisy, but the CPU time a process
// is charged is its own.

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every Linux architecture Go supports.
const clockTicksPerSecond = 100

// PID is the process ID of the current run (0 before the first start).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// CPUTime is the CPU time (user plus system) the current run has used so
// far, to the 10 ms resolution of /proc/PID/stat.
func (p *Process) CPUTime() (time.Duration, error) {
	pid := p.PID()
	if pid == 0 {
		return 0, errors.New("localcluster: the process has not started")
	}
	return ProcessCPUTime(pid)
}

// ProcessCPUTime is the CPU time (utime + stime) process pid has used.
func ProcessCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the content of
// /proc/PID/stat. The command name (field 2) is in parentheses and may hold
// spaces, so the fields are counted from after its closing parenthesis.
func parseStatCPU(stat string) (time.Duration, error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("localcluster: /proc stat without a command name: %q", stat)
	}
	fields := strings.Fields(stat[end+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return 0, fmt.Errorf("localcluster: /proc stat too short: %q", stat)
	}
	var ticks int64
	for _, f := range fields[14-3 : 15-3+1] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("localcluster: /proc stat field %q: %w", f, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, nil
}
