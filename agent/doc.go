// Package agent is the Steward agent as a library. A Go program runs one
// inside its own process with New, Start, Leave and Shutdown, and may serve
// its HTTP API (Handler) from its own server; the sidecar binary
// (cmd/agent) is this package under flags, a config file and signals.
//
// An agent joins the others over gossip (memberlist), keeps the cluster
// state in raft, and tells the app next to it which partitions it holds
// through signed webhooks (see package hooks for the app's side).
package agent
