package raftctl

import "github.com/hashicorp/raft"

// Leader observations. raft tells its observers when the leader a server
// knows changes: to another server, to none (its heartbeat timeout ran
// out), or to itself once it has won an election. A loop that has work
// only while its server leads (the leader's lease round) waits for that
// instead of asking IsLeader on a ticker: on an idle follower it then never
// wakes, and each wake-up of an idle process costs more than its work
// (docs/benchmarks.md, "Where an idle agent's CPU goes").

// SubscribeLeader returns a channel that is signalled after the leader
// this server knows changes, and a function that ends the subscription.
// When this server has won an election, IsLeader is already true as the
// signal is sent. Signals coalesce (one pending signal stands for any
// number of changes), so the receiver reads the current state (IsLeader,
// Leader) rather than counting signals.
func (n *Node) SubscribeLeader() (<-chan struct{}, func()) { return n.leaders.subscribe() }

// watchLeader registers raft's observer of leader changes; leaderWatchLoop
// passes them on to SubscribeLeader's subscribers until Shutdown.
func (n *Node) watchLeader() {
	// Buffered and non-blocking (raft drops an observation when the buffer
	// is full): a pending one already means "look again".
	observations := make(chan raft.Observation, 1)
	n.raft.RegisterObserver(raft.NewObserver(observations, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		for {
			select {
			case <-n.shutdownCh:
				return
			case <-observations:
				n.leaders.notify()
			}
		}
	}()
}
