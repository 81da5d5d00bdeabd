package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Failure detection scenarios: five real agents with the local profile.

type raftServer struct {
	NodeID string `json:"node_id"`
	RaftID string `json:"raft_id"`
	Voter  bool   `json:"voter"`
}

func (n *node) raftServers() ([]raftServer, error) {
	var r struct {
		Servers []raftServer `json:"servers"`
	}
	return r.Servers, n.getJSON("/v1/raft", &r)
}

func (n *node) memberStatus(id string) (string, error) {
	ms, err := n.members()
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Status, nil
		}
	}
	return "", fmt.Errorf("%s does not list %s", n.id, id)
}

// leaderOf returns the node the given agents agree leads.
func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	var leader *node
	eventually(t, 30*time.Second, "a leader all agree on", func() error {
		ids := map[string]bool{}
		for _, n := range nodes {
			st, err := n.status()
			if err != nil {
				return err
			}
			ids[st.LeaderID] = true
		}
		if len(ids) != 1 || ids[""] {
			return fmt.Errorf("leaders seen: %v", ids)
		}
		for _, n := range nodes {
			if ids[n.id] {
				leader = n
				return nil
			}
		}
		return fmt.Errorf("the leader %v is not among the agents asked", ids)
	})
	return leader
}

func without(nodes []*node, gone ...*node) []*node {
	var out []*node
	for _, n := range nodes {
		keep := true
		for _, g := range gone {
			keep = keep && n != g
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

// waitFailedAndRemoved waits until every survivor lists each victim as
// failed and the raft configuration no longer has them.
func waitFailedAndRemoved(t *testing.T, survivors []*node, victims ...*node) {
	t.Helper()
	eventually(t, 30*time.Second, "victims failed on every survivor and out of raft", func() error {
		for _, s := range survivors {
			for _, v := range victims {
				st, err := s.memberStatus(v.id)
				if err != nil {
					return err
				}
				if st != "failed" {
					return fmt.Errorf("%s sees %s as %s", s.id, v.id, st)
				}
			}
			servers, err := s.raftServers()
			if err != nil {
				return err
			}
			for _, srv := range servers {
				for _, v := range victims {
					if srv.NodeID == v.id {
						return fmt.Errorf("%s's raft configuration still has %s", s.id, v.id)
					}
				}
			}
		}
		return nil
	})
}

// waitVoters waits until the raft configuration has want voters, all alive.
func waitVoters(t *testing.T, nodes []*node, want int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d voters", want), func() error {
		servers, err := nodes[0].raftServers()
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		if voters != want {
			return fmt.Errorf("%d voters in %+v", voters, servers)
		}
		return nil
	})
}

func TestKillingAFollowerFailsAndRemovesIt(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	victim.kill()
	survivors := without(nodes, victim)
	waitFailedAndRemoved(t, survivors, victim)
	// Four agents: the voter target drops to three.
	waitVoters(t, survivors, 3)
	checkNoPartitionOn(t, survivors[0], victim.id)
}

func TestKillingTheLeaderElectsANewOneWhichRemovesTheOld(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	old := leaderOf(t, nodes)
	old.kill()
	survivors := without(nodes, old)
	newLeader := leaderOf(t, survivors)
	if newLeader == old {
		t.Fatal("the killed agent is still named leader")
	}
	waitFailedAndRemoved(t, survivors, old)
	checkNoPartitionOn(t, survivors[0], old.id)
}

func TestKillingTwoOfFiveRemovesBothAndKeepsQuorum(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	followers := without(nodes, leader)
	a, b := followers[0], followers[1]
	a.kill()
	b.kill()
	survivors := without(nodes, a, b)
	waitFailedAndRemoved(t, survivors, a, b)
	for _, s := range survivors {
		st, err := s.status()
		if err != nil {
			t.Fatal(err)
		}
		if st.LeaderID == "" {
			t.Fatalf("%s has no leader after two deaths", s.id)
		}
	}
	checkNoPartitionOn(t, survivors[0], a.id, b.id)
}

func TestAShortPauseRemovesNobody(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	// The local profile confirms a failure after three failed probes
	// 200 ms apart, on top of gossip's suspicion: a 300 ms pause is inside
	// the window.
	for i := 0; i < 5; i++ {
		victim.signal(syscall.SIGSTOP)
		time.Sleep(300 * time.Millisecond) // the pause itself, not a synchronisation
		victim.signal(syscall.SIGCONT)
		time.Sleep(300 * time.Millisecond) // time to refute before the next pause
	}
	// Give detection its full window to act on any wrong conclusion, then
	// check that nothing was ever marked failed.
	eventually(t, 10*time.Second, "victim alive everywhere", func() error {
		for _, s := range nodes {
			st, err := s.memberStatus(victim.id)
			if err != nil {
				return err
			}
			if st != "alive" {
				return fmt.Errorf("%s sees %s as %s", s.id, victim.id, st)
			}
		}
		return nil
	})
	for _, s := range nodes {
		if strings.Contains(s.log(), "member failed") {
			t.Fatalf("%s marked a member failed after short pauses", s.id)
		}
	}
	waitVoters(t, nodes, 5)
}

func TestALongPauseRemovesTheNodeAndItComesBackOnlyAsARejoin(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	victim := without(nodes, leader)[0]
	victim.signal(syscall.SIGSTOP)
	survivors := without(nodes, victim)
	waitFailedAndRemoved(t, survivors, victim)
	checkNoPartitionOn(t, survivors[0], victim.id)
	victim.signal(syscall.SIGCONT)
	// It is taken back as a rejoin: a new incarnation, logged by the leader,
	// alive again, with no partitions it held before its failure.
	eventually(t, 30*time.Second, "victim back as a rejoin", func() error {
		var r struct {
			Members []struct {
				ID          string `json:"id"`
				Status      string `json:"status"`
				Incarnation int    `json:"incarnation"`
			} `json:"members"`
		}
		if err := survivors[0].getJSON("/v1/members", &r); err != nil {
			return err
		}
		for _, m := range r.Members {
			if m.ID == victim.id && (m.Status != "alive" || m.Incarnation < 2) {
				return fmt.Errorf("%+v", m)
			}
		}
		l := leaderOf(t, survivors)
		if !strings.Contains(l.log(), "member rejoined") {
			return fmt.Errorf("leader %s has not logged a rejoin", l.id)
		}
		return nil
	})
}

// checkNoPartitionOn waits until no partition names the given nodes and
// every partition has a primary.
func checkNoPartitionOn(t *testing.T, n *node, gone ...string) {
	t.Helper()
	eventually(t, 30*time.Second, "no partition on "+strings.Join(gone, ","), func() error {
		pt, err := n.partitions()
		if err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			if p.Primary == "" {
				return fmt.Errorf("partition %d has no primary", p.ID)
			}
			for _, h := range append([]string{p.Primary}, p.Replicas...) {
				for _, g := range gone {
					if h == g {
						return fmt.Errorf("partition %d still held by %s", p.ID, g)
					}
				}
			}
		}
		return nil
	})
}
