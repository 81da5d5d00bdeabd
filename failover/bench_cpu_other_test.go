//go:build !unix

package failover

import "time"

// processCPU is not measured here: the CPU metric reads 0.
func processCPU() time.Duration { return 0 }
