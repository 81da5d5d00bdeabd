// Package health turns gossip signals and Steward's own probes into verdicts:
// a node is *failed* after a number of consecutive failed probes, and
// *recovered* when it comes back (unless it flaps, in which case it is held
// down for a growing time first). It also probes the co-located app.
//
// The package has two layers, as raft-autopilot and etcd's raft do it:
//
//   - Detector is the pure core. It has no clock, no goroutines and no I/O:
//     every input (a gossip event, a probe result, the current time) is an
//     explicit argument, so it is tested with tables and explicit times.
//   - Monitor and AppChecker do the I/O. Each owns one loop goroutine (plus
//     one goroutine per probe in flight), takes its time from an injected
//     Clock, and stops everything it started on Close.
//
// health imports nothing else from Steward: gossip events and cluster sizes
// arrive as plain values and the agent (package agent) adapts them.
package health
