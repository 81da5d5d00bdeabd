package e2e

// Issue 17's "both cores saturated by another process", on demand: the
// detection and pause benchmarks start STEWARD_BENCH_BURN busy processes
// beside the agents, so that the stress is a committed condition rather
// than whatever else the machine happened to run.

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

// burnCores starts STEWARD_BENCH_BURN processes that spin on one core each
// (none when it is unset) and stops them, by PID, when b ends; they die
// with the benchmark's process too (Pdeathsig), even if it is killed. It
// returns how many it started.
func burnCores(b *testing.B) int {
	v := os.Getenv("STEWARD_BENCH_BURN")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 64 {
		b.Fatalf("STEWARD_BENCH_BURN=%q: want a number of busy processes, 0 to 64", v)
	}
	for i := 0; i < n; i++ {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatalf("start a busy process: %v", err)
		}
		b.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	return n
}
