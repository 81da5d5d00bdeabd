package agent

import (
	"testing"

	"github.com/steward-dev/steward/gossip"
)

// A raft server the leader's AppendEntries do not reach is suspected only
// when it is a member gossip still counts in, in the same process.
func TestOnlyAMemberGossipCountsInIsSuspectedWhenRaftCannotReachIt(t *testing.T) {
	members := map[string]gossip.Node{
		"db-1": {ID: "db-1", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "db-1-0a1b2c3d"}},
		"db-2": {ID: "db-2", State: gossip.StateSuspect, Meta: gossip.Meta{RaftID: "db-2-00000002"}},
		"db-3": {ID: "db-3", State: gossip.StateDead, Meta: gossip.Meta{RaftID: "db-3-00000003"}},
		"db-4": {ID: "db-4", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "db-4-ffffffff"}},
		"me":   {ID: "me", State: gossip.StateAlive, Meta: gossip.Meta{RaftID: "me-00000005"}},
	}
	member := func(id string) (gossip.Node, bool) { n, ok := members[id]; return n, ok }
	for _, tc := range []struct {
		what, raftID string
		want         string
	}{
		{"an alive member", "db-1-0a1b2c3d", "db-1"},
		{"a member gossip suspects already", "db-2-00000002", "db-2"},
		{"a member gossip holds dead", "db-3-00000003", ""},
		{"an earlier process of a member (another raft ID)", "db-4-00000004", ""},
		{"a node gossip does not know", "db-9-00000009", ""},
		{"this agent itself", "me-00000005", ""},
		{"a raft ID Steward does not make", "db-1", ""},
		{"a suffix that is not hex", "db-1-zzzzzzzz", ""},
	} {
		got, ok := unreachableMember(tc.raftID, "me", member)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s (%s): suspected %q (%v), want %q", tc.what, tc.raftID, got, ok, tc.want)
		}
	}
}
