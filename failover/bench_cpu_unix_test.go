//go:build unix

package failover

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) this process has used: a
// benchmark's figure that other processes on a loaded machine do not
// inflate, as they do its wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
