// Package localcluster starts local clusters of real Steward processes on
// one machine: agent processes of a built cmd/agent binary on free ports,
// the example kvapp next to them, and a webhook proxy that checks every
// signature on the way to an app. It is what the end-to-end tests, the
// benchmarks and `agent demo` run clusters with, in the manner of rqlite's
// and Consul's shared test-cluster packages.
//
// It polls the agents' HTTP API for readiness and for a settled cluster
// (Poll, Eventually and the conditions in conditions.go), and stops only
// the processes it started, by PID. Nothing in it is specific to a test
// framework: the few helpers that fail a test take the TB interface, which
// *testing.T and *testing.B satisfy.
//
// Where a node runs (its loopback address and uid) is its Placement: the
// e2e network-fault tests place each node on its own 127.0.x.y and uid and
// cut traffic between them with nftables; everything else runs on
// 127.0.0.1 as the caller's user (DefaultPlacement).
package localcluster

// TB is the part of testing.TB that the helpers which fail a test use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}
