package agent

import (
	"time"

	"github.com/steward-dev/steward/failover"
)

// The loops that drive the controller: the leader's reconcile round, the
// bootstrap of a new cluster, and the age tracker's feed.

// reconcileInterval is how often the leader reconciles even when nothing
// woke it: the safety net behind the event-driven wake-ups.
const reconcileInterval = time.Second

// leaderLoop runs the controller's reconcile round while this agent leads:
// on every change of the state, every wake-up (gossip event, verdict, app
// health) and every reconcileInterval.
func (a *Agent) leaderLoop() {
	ticker := time.NewTicker(reconcileInterval)
	defer ticker.Stop()
	leading := false
	for {
		select {
		case <-a.ctx.Done():
			return
		case l := <-a.raft.LeadershipChanges():
			if l && !leading {
				a.log.Info("became leader")
				// A barrier makes sure every entry of earlier terms is
				// applied before the leader acts on the state.
				if err := a.raft.Barrier(10 * time.Second); err != nil {
					a.log.Warn("barrier after election failed", "error", err)
					continue
				}
				a.observeAllSharedSuspicions()
			} else if !l && leading {
				a.log.Info("lost leadership")
			}
			leading = l
		case <-a.kick:
		case <-a.raft.Changes():
		case <-ticker.C:
		}
		if leading && a.raft.IsLeader() {
			if err := a.ctrl.Reconcile(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Warn("reconcile", "error", err)
			}
		}
	}
}

// bootstrapLoop runs the controller's bootstrap attempt every 100 ms until
// it is done (see control.Bootstrapper).
func (a *Agent) bootstrapLoop() {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	b := a.ctrl.NewBootstrapper()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-ticker.C:
		}
		if b.Step(a.ctx) {
			return
		}
	}
}

// knownLeader reports whether raft knows a leader (then this agent is
// part of a cluster).
func (a *Agent) knownLeader() bool {
	id, _ := a.raft.Leader()
	return id != ""
}

// watchAges feeds the controller's age tracker every state this agent
// applies, so that it dates what it sees from about when it was committed.
func (a *Agent) watchAges() {
	changes, unsubscribe := a.raft.Subscribe()
	defer unsubscribe()
	for {
		a.raft.Read(func(c *failover.Cluster) { a.ctrl.Ages().Observe(c, a.clock.Elapsed()) })
		select {
		case <-a.ctx.Done():
			return
		case <-changes:
		}
	}
}
