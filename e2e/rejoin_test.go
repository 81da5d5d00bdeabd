package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// Rejoin scenarios: a node ID the cluster knew comes back after it was
// failed and removed, with the same or new ports, the same or an empty
// data dir.

type rejoinCase struct {
	name      string
	newPorts  bool
	wipeData  bool
	wantNewID bool
}

func TestRejoinOfAKnownNodeID(t *testing.T) {
	cases := []rejoinCase{
		{name: "same address, same data dir"},
		{name: "new ports, same data dir", newPorts: true},
		{name: "same address, empty data dir", wipeData: true, wantNewID: true},
		{name: "new ports, empty data dir", newPorts: true, wipeData: true, wantNewID: true},
	}
	for _, rc := range cases {
		t.Run(rc.name, func(t *testing.T) { testRejoin(t, rc) })
	}
}

func testRejoin(t *testing.T, rc rejoinCase) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "64")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	survivors := without(nodes, victim)
	oldRaftID := raftIDOf(t, leader, victim.ID)

	victim.Kill()
	waitFailedAndRemoved(t, survivors, victim)
	checkNoPartitionOn(t, survivors[0], victim.ID)
	before, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}

	if rc.newPorts {
		victim.GossipPort, victim.RaftPort, victim.HTTPPort = freePort(t), freePort(t), freePort(t)
	}
	if rc.wipeData {
		if err := os.RemoveAll(victim.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	victim.start("-join", leader.GossipAddr())

	// One alive entry, a new incarnation, one raft server for the node,
	// the same leader at the same term, and its share of partitions back.
	eventually(t, 90*time.Second, "rejoin recognised", func() error {
		var r struct {
			Members []struct {
				ID          string `json:"id"`
				Status      string `json:"status"`
				Incarnation int    `json:"incarnation"`
			} `json:"members"`
		}
		if err := leader.GetJSON("/v1/members", &r); err != nil {
			return err
		}
		entries := 0
		for _, m := range r.Members {
			if m.ID != victim.ID {
				continue
			}
			entries++
			if m.Status != "alive" || m.Incarnation < 2 {
				return fmt.Errorf("%+v", m)
			}
		}
		if entries != 1 {
			return fmt.Errorf("%d entries for %s", entries, victim.ID)
		}
		servers, err := leader.RaftServers()
		if err != nil {
			return err
		}
		found := 0
		for _, s := range servers {
			if s.NodeID == victim.ID {
				found++
			}
		}
		if found != 1 {
			return fmt.Errorf("%d raft servers for %s in %+v", found, victim.ID, servers)
		}
		return nil
	})
	newRaftID := raftIDOf(t, leader, victim.ID)
	if rc.wantNewID && newRaftID == oldRaftID {
		t.Fatalf("an empty data dir must come back as a new raft server, still %s", newRaftID)
	}
	if !rc.wantNewID && newRaftID != oldRaftID {
		t.Fatalf("the same data dir must keep its raft ID: %s became %s", oldRaftID, newRaftID)
	}
	all := append(survivors, victim)
	waitSameTable(t, all, 60*time.Second)
	checkBalancedEventually(t, leader, ids(all))
	after, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	if after.LeaderID != before.LeaderID || after.Term != before.Term {
		t.Fatalf("the rejoin disturbed the leader: %s@%d before, %s@%d after", before.LeaderID, before.Term, after.LeaderID, after.Term)
	}
}

func raftIDOf(t *testing.T, n *node, id string) string {
	t.Helper()
	var r struct {
		Members []struct {
			ID     string `json:"id"`
			RaftID string `json:"raft_id"`
		} `json:"members"`
	}
	if err := n.GetJSON("/v1/members", &r); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Members {
		if m.ID == id {
			return m.RaftID
		}
	}
	t.Fatalf("%s not listed", id)
	return ""
}

// The README's three-node recipe gives every agent -join of node1's
// gossip address, node1 included. Restarted, node1 then had only itself
// to join and stayed alone in gossip. It must find the others again,
// whether it was killed or left gracefully (SIGTERM) before the restart.
func TestTheREADMERecipeRestartsNode1IntoTheFullCluster(t *testing.T) {
	for _, how := range []string{"SIGKILL", "SIGTERM"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t)
			nodes := formCluster(t, c, 3, "-partitions", "16")
			node1 := nodes[0]
			if how == "SIGKILL" {
				node1.Kill()
			} else if err := node1.Stop(30 * time.Second); err != nil {
				t.Fatalf("graceful stop: %v", err)
			}
			node1.start("-bootstrap-expect", "3", "-join", node1.GossipAddr())
			eventually(t, 90*time.Second, "node1 alive in everyone's view, and everyone in node1's", func() error {
				for _, viewer := range nodes {
					ms, err := viewer.Members()
					if err != nil {
						return err
					}
					alive := 0
					for _, m := range ms {
						if m.Status == "alive" {
							alive++
						}
					}
					if alive != 3 {
						return fmt.Errorf("%s sees %d alive members: %+v", viewer.ID, alive, ms)
					}
				}
				return nil
			})
			waitSameTable(t, nodes, 60*time.Second)
		})
	}
}
