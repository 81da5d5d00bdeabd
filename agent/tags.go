package agent

import (
	"time"

	"github.com/steward-dev/steward/failover"
)

// Tags: this node's -tags go into the cluster state through raft
// (CmdSetTags, proposed by this agent), not through gossip metadata,
// whose size is small and fixed. The leader registers a member from gossip
// without tags (a registration keeps the tags already recorded), and the
// member's own agent then records them; until it has, no resource with a
// node selector places a copy on the member.

// tagsLoop records this node's tags whenever the state's differ from them
// (after the registration, and after a restart with other -tags).
func (a *Agent) tagsLoop() { a.onChange(time.Second, a.recordTags) }

// recordTags proposes CmdSetTags when this member is registered and its
// recorded tags are not this agent's -tags.
func (a *Agent) recordTags() {
	if !a.ready.Load() {
		return
	}
	want, err := failover.ParseTags(a.cfg.Tags) // checked by Config.Validate
	if err != nil {
		return
	}
	differ := false
	a.raft.Read(func(c *failover.Cluster) {
		m, ok := c.Members[a.cfg.NodeID]
		differ = ok && !failover.SameTags(m.Tags, want)
	})
	if !differ {
		return
	}
	if _, err := a.apply(failover.Command{Kind: failover.CmdSetTags, At: time.Now().UnixNano(), Node: a.cfg.NodeID, Tags: want}); err != nil {
		a.log.Warn("recording this node's tags", "tags", a.cfg.Tags, "error", err)
		return
	}
	a.log.Info("tags recorded", "tags", failover.FormatTags(want))
}
