package raftctl

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test shuts its nodes down; raft, the transport and the stores must
// leave no goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
