package raftctl

import "time"

// Announcing commits to the followers.
//
// A follower applies an entry once it learns that the entry is committed,
// and it learns that only from the leader's next AppendEntries: raft sends
// one when a new entry is appended, or after CommitTimeout without one.
// With raft's 50 ms CommitTimeout the leader of an idle cluster sends an
// empty AppendEntries to every follower every 50-100 ms (each reading the
// previous entry back from its log store): members × ticks of work while
// nothing happens, most of the leader's idle CPU at 50 agents. Instead
// CommitTimeout is long (DefaultConfig), and after each command the leader
// applies it appends a barrier entry, which carries the new commit index to
// every follower at once. Wake-ups coalesce: one barrier announces every
// command committed before it, however many there were.

// announceEnqueueTimeout bounds the wait to hand a barrier to raft; the
// barrier itself is not waited for: with BatchApplyCh an entry still
// queued when raft shuts down is never answered, and a follower learns the
// commit from the barrier's AppendEntries whatever becomes of it.
const announceEnqueueTimeout = time.Second

// announcePace is the least time between two announcements: the commands
// of a burst (a reconcile round applies several in a row) share one
// barrier, and announcing costs at most one entry per pace.
const announcePace = 10 * time.Millisecond

// announceCommits wakes the announcer without blocking (the leader just
// committed a command).
func (n *Node) announceCommits() {
	select {
	case n.announce <- struct{}{}:
	default:
	}
}

// announceLoop appends a barrier after each wake-up, while this server
// leads, until Shutdown. The barrier's own commit reaches the followers
// with the next entry or CommitTimeout; it changes no state.
func (n *Node) announceLoop() {
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-n.announce:
		}
		if n.IsLeader() {
			n.raft.Barrier(announceEnqueueTimeout)
		}
		pace.Reset(announcePace)
		select {
		case <-n.shutdownCh:
			return
		case <-pace.C:
		}
	}
}
