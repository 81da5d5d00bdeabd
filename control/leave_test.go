package control

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
)

// A leave is refused when it would lose the last copy of a partition or
// the quorum of the voters that stay; a non-voter may always go.
func TestLeaveSafety(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []string
		voters map[string]bool
		self   string
		dead   []string // gossip holds them dead
		gone   []string // the state holds them failed
		refuse string   // "" when the leave may go ahead
	}{
		{name: "the only node holding data", nodes: []string{"n1"}, voters: map[string]bool{"n1": true}, self: "n1",
			refuse: "last node holding data"},
		{name: "the others are failed: the last node holding data", nodes: []string{"n1", "n2"}, voters: map[string]bool{"n1": true}, self: "n1",
			gone: []string{"n2"}, refuse: "last node holding data"},
		{name: "three voters, all alive", nodes: []string{"n1", "n2", "n3"}, voters: map[string]bool{"n1": true, "n2": true, "n3": true}, self: "n1"},
		{name: "three voters, one other dead: the two left need both", nodes: []string{"n1", "n2", "n3"}, voters: map[string]bool{"n1": true, "n2": true, "n3": true}, self: "n1",
			dead: []string{"n3"}, refuse: "1 of the other 2 voters are alive"},
		{name: "five voters, one other dead: three of four remain", nodes: []string{"n1", "n2", "n3", "n4", "n5"}, voters: map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true}, self: "n1",
			dead: []string{"n5"}},
		{name: "five voters, two others dead", nodes: []string{"n1", "n2", "n3", "n4", "n5"}, voters: map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true}, self: "n1",
			dead: []string{"n4", "n5"}, refuse: "2 of the other 4 voters are alive"},
		{name: "a non-voter, whatever the voters", nodes: []string{"n1", "n2", "n3", "n4"}, voters: map[string]bool{"n1": true, "n2": true, "n3": true}, self: "n4",
			dead: []string{"n2", "n3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := newCluster(tt.self, tt.nodes, tt.voters)
			for _, id := range tt.dead {
				cl.members.set(id, gossip.StateDead)
			}
			for _, id := range tt.gone {
				cl.setStatus(id, failover.StatusFailed)
			}
			before := cl.raft.Snapshot()
			err := cl.ctrl.CheckLeaveSafe(cl.raft.Snapshot())
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (!errors.Is(err, ErrLeaveRefused) || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("got %v, want a refusal saying %q", err, tt.refuse)
			}
			if after := cl.raft.Snapshot(); !slices.Equal(after.MemberIDs(), before.MemberIDs()) || len(cl.raft.takeOps()) != 0 {
				t.Fatal("the check changed something")
			}
		})
	}
}

// The leaving leader hands leadership over: the only voter first promotes
// another server.
func TestTheOnlyVoterPromotesAnotherBeforeHandingOver(t *testing.T) {
	cl := newCluster("n1", []string{"n1", "n2", "n3"}, map[string]bool{"n1": true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.ctrl.HandOverLeadership(ctx); err != nil {
		t.Fatal(err)
	}
	if id, _ := cl.raft.Leader(); id != "n2-r" {
		t.Fatalf("leader %q after the hand-over, want n2-r", id)
	}
	if ops := cl.raft.takeOps(); !slices.Equal(ops, []string{"promote n2-r", "transfer"}) {
		t.Fatalf("hand-over: %v, want a promotion then the transfer", ops)
	}
}
