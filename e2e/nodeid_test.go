package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-dev/steward/localcluster"
)

// TestASecondAgentWithATakenNodeIDIsRefusedAndToldWhichHasIt: node1 and
// node2 form a cluster; a third process started with -node-id node2 (its
// own data dir and ports) joining node1 exits with status 2 and one line
// naming the running node2's addresses, leaving no data dir; the real node2
// is untouched.
func TestASecondAgentWithATakenNodeIDIsRefusedAndToldWhichHasIt(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 2, "-partitions", "8")
	original := nodes[1]

	impostorDir := filepath.Join(c.dir, "node2-again")
	a, err := localcluster.NewAgent(agentBin, original.ID, impostorDir, localcluster.DefaultPlacement)
	if err != nil {
		t.Fatal(err)
	}
	a.Profile = "local"
	impostor := &node{Agent: a, t: t}
	c.nodes = append(c.nodes, impostor)
	impostor.start("-join", nodes[0].GossipAddr())
	last := exitLine(t, impostor, 2)
	if !strings.HasPrefix(last, "agent: -node-id:") || !strings.Contains(last, original.GossipAddr()) || !strings.Contains(last, original.APIAddr()) {
		t.Fatalf("the last line does not name the running %s (gossip %s, API %s): %q", original.ID, original.GossipAddr(), original.APIAddr(), last)
	}
	if _, err := os.Stat(impostorDir); !os.IsNotExist(err) {
		t.Fatalf("the refused agent left its data dir (%v)", err)
	}
	members, err := nodes[0].MembersByID()
	if err != nil {
		t.Fatal(err)
	}
	if m := members[original.ID]; m.Status != "alive" || m.APIAddr != original.APIAddr() {
		t.Fatalf("node1 sees %s as %+v, want the original, alive", original.ID, m)
	}
	if !original.Running() {
		t.Fatalf("the original %s stopped:\n%s", original.ID, original.Tail(20))
	}
}
