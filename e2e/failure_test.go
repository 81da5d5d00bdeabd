package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Failure detection scenarios: five real agents with the local profile.

// leaderOf returns the node the given agents agree leads.
func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	var leader *node
	eventually(t, 30*time.Second, "a leader all agree on", func() error {
		ids := map[string]bool{}
		for _, n := range nodes {
			st, err := n.Status()
			if err != nil {
				return err
			}
			ids[st.LeaderID] = true
		}
		if len(ids) != 1 || ids[""] {
			return fmt.Errorf("leaders seen: %v", ids)
		}
		for _, n := range nodes {
			if ids[n.ID] {
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
				st, err := s.MemberStatus(v.ID)
				if err != nil {
					return err
				}
				if st != "failed" {
					return fmt.Errorf("%s sees %s as %s", s.ID, v.ID, st)
				}
			}
			servers, err := s.RaftServers()
			if err != nil {
				return err
			}
			for _, srv := range servers {
				for _, v := range victims {
					if srv.NodeID == v.ID {
						return fmt.Errorf("%s's raft configuration still has %s", s.ID, v.ID)
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
		servers, err := nodes[0].RaftServers()
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
	victim.Kill()
	survivors := without(nodes, victim)
	waitFailedAndRemoved(t, survivors, victim)
	// Four agents: the voter target drops to three.
	waitVoters(t, survivors, 3)
	checkNoPartitionOn(t, survivors[0], victim.ID)
}

func TestKillingTheLeaderElectsANewOneWhichRemovesTheOld(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	old := leaderOf(t, nodes)
	old.Kill()
	survivors := without(nodes, old)
	newLeader := leaderOf(t, survivors)
	if newLeader == old {
		t.Fatal("the killed agent is still named leader")
	}
	waitFailedAndRemoved(t, survivors, old)
	checkNoPartitionOn(t, survivors[0], old.ID)
}

func TestKillingTwoOfFiveRemovesBothAndKeepsQuorum(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	followers := without(nodes, leader)
	a, b := followers[0], followers[1]
	a.Kill()
	b.Kill()
	survivors := without(nodes, a, b)
	waitFailedAndRemoved(t, survivors, a, b)
	for _, s := range survivors {
		st, err := s.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.LeaderID == "" {
			t.Fatalf("%s has no leader after two deaths", s.ID)
		}
	}
	checkNoPartitionOn(t, survivors[0], a.ID, b.ID)
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
		victim.Signal(syscall.SIGSTOP)
		time.Sleep(300 * time.Millisecond) // the pause itself, not a synchronisation
		victim.Signal(syscall.SIGCONT)
		time.Sleep(300 * time.Millisecond) // time to refute before the next pause
	}
	// Give detection its full window to act on any wrong conclusion, then
	// check that nothing was ever marked failed.
	waitAliveEverywhere(t, nodes, victim)
	for _, s := range nodes {
		if strings.Contains(s.Log(), "member failed") {
			t.Fatalf("%s marked a member failed after short pauses", s.ID)
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
	victim.Signal(syscall.SIGSTOP)
	survivors := without(nodes, victim)
	waitFailedAndRemoved(t, survivors, victim)
	checkNoPartitionOn(t, survivors[0], victim.ID)
	victim.Signal(syscall.SIGCONT)
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
		if err := survivors[0].GetJSON("/v1/members", &r); err != nil {
			return err
		}
		for _, m := range r.Members {
			if m.ID == victim.ID && (m.Status != "alive" || m.Incarnation < 2) {
				return fmt.Errorf("%+v", m)
			}
		}
		l := leaderOf(t, survivors)
		if !strings.Contains(l.Log(), "member rejoined") {
			return fmt.Errorf("leader %s has not logged a rejoin", l.ID)
		}
		return nil
	})
}

// checkNoPartitionOn waits until no partition names the given nodes and
// every partition has a primary.
func checkNoPartitionOn(t *testing.T, n *node, gone ...string) {
	t.Helper()
	eventually(t, 30*time.Second, "no partition on "+strings.Join(gone, ","), func() error {
		pt, err := n.Partitions()
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

// waitAliveEverywhere waits until every node sees victim alive.
func waitAliveEverywhere(t *testing.T, nodes []*node, victim *node) {
	t.Helper()
	eventually(t, 10*time.Second, "victim alive everywhere", func() error {
		for _, s := range nodes {
			st, err := s.MemberStatus(victim.ID)
			if err != nil {
				return err
			}
			if st != "alive" {
				return fmt.Errorf("%s sees %s as %s", s.ID, victim.ID, st)
			}
		}
		return nil
	})
}
