// Package raftctl runs Steward's replicated state: hashicorp/raft with
// raft-boltdb for the log and stable store, a file snapshot store, a TCP
// transport (optionally mutual TLS), and a finite state machine over failover.Cluster.
//
// The package knows nothing about gossip or HTTP; the agent (package agent)
// drives it:
//
//   - Start: New opens DataDir/raft and listens. If HasState is true the node
//     resumes its cluster on its own: never bootstrap it again.
//   - Form a cluster (-bootstrap-expect N): once N agents see each other,
//     every one of them calls Bootstrap with the same N servers as voters.
//     Exactly one cluster forms; a node that already has state ignores it.
//   - Join: the leader calls AddNonvoter for a server that appears in gossip,
//     then Promote for the ones control.PlanVoters picks once they are
//     caught up. A server that comes back at a new address is re-added with the same call
//     (its address is updated); see AddNonvoter for a new ID at an old
//     address.
//   - Write: ApplyForwarded, on any server: it applies on the leader, or
//     forwards the command to the leader (named by Leader) over the raft
//     port, where the leader calls ApplyEncoded and answers with the result
//     or the state machine's error (errors.Is still works for the
//     sentinels). Apply is the leader-only form: ErrNotLeader on a follower.
//   - Probe a peer: Ping its raft address. It answers only while its Node
//     runs.
//   - Read: Read or Snapshot, after WaitCaughtUp on start (the FSM replays
//     asynchronously after a restart); Changes or Subscribe to learn when to
//     look again.
//   - Leave: a leader calls TransferLeadership first; the new leader then
//     calls Remove for it. Shutdown last.
//
// One port: the raft listener also carries Steward's own exchanges between
// agents (forwarded writes and pings), told apart by the first byte of each
// connection (see kindForward in transport.go), so they reach every agent
// wherever raft does, under the same mutual TLS, while the agents' HTTP API
// can stay on loopback.
//
// Security: with Config.ClusterSecrets giving any secret, every connection
// on the raft port, raft's own included, starts with a challenge-response
// handshake on a key derived from them (auth.go); a peer that cannot prove
// one is refused with a sentence saying why, and nothing it sends reaches
// raft or the forwarding handler. With Config.TLS set, the transport is
// also mutual TLS (TLS 1.2+, client certificates required and verified
// against the cluster CA, peer certificates checked against the host of the
// peer's raft address or TLS.ServerName). With neither, anyone who can reach
// the raft port can forward writes, as they could send raft RPCs. Commands
// are bounded by MaxCommandSize, and each exchange's frames by limits of
// its own (controlHandlers), refused from their length before anything is
// read.
//
// State integrity: New checks raft's state before raft opens it (every page
// of raft.db walked, every log entry read, the newest snapshot read whole,
// and nothing behind the progress recorded in DataDir/raft-applied.json)
// and refuses, with ErrUnsafeState naming the file, state that is missing,
// damaged, rolled back or another server's (integrity.go). While running,
// a write raft.db refuses is StorageError, not a panic (storage.go).
//
// Every log entry and snapshot starts with an encoding version byte (1 =
// JSON). A command that does not decode or that the model refuses changes
// nothing, on every replica alike, and its error is returned to the caller of
// Apply. Restore is all or nothing, so a corrupt snapshot never leaves half a
// state (raft then falls back to an older snapshot).
package raftctl
