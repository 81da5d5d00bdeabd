package e2e

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Churn: nodes die for good and are replaced by nodes with new IDs, over
// and over. The dead stay in the member list as failed (until -reap-after
// or agent force-leave), and none of them may make the cluster freeze at
// the next real death.

// copiesEverywhere waits until n serves a table where every partition has
// rf copies, on live nodes only, and no copy is in flight.
func copiesEverywhere(t *testing.T, n *node, rf int, dead map[string]bool) {
	t.Helper()
	eventually(t, 30*time.Second, "every partition fully replicated on live nodes", func() error {
		var pt struct {
			Partitions []struct {
				ID         int        `json:"id"`
				Primary    string     `json:"primary"`
				Replicas   []string   `json:"replicas"`
				Migrations []struct{} `json:"migrations"`
			} `json:"partitions"`
		}
		if err := n.GetJSON("/v1/partitions", &pt); err != nil {
			return err
		}
		for _, p := range pt.Partitions {
			holders := append([]string{p.Primary}, p.Replicas...)
			if p.Primary == "" || len(holders) != rf || len(p.Migrations) != 0 {
				return fmt.Errorf("partition %d: primary %q, replicas %v, %d copies in flight", p.ID, p.Primary, p.Replicas, len(p.Migrations))
			}
			for _, h := range holders {
				if dead[h] {
					return fmt.Errorf("partition %d still held by %s, which is dead", p.ID, h)
				}
			}
		}
		return nil
	})
}

// notFrozen fails the test if n reports automatic removals frozen.
func notFrozen(t *testing.T, n *node, when string) {
	t.Helper()
	var st struct {
		Frozen string `json:"removals_frozen"`
	}
	if err := n.GetJSON("/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Frozen != "" {
		t.Fatalf("%s: removals frozen on %s: %s", when, n.ID, st.Frozen)
	}
}

// churnDeaths is how many agents TestChurnDeathsAndReplacementsInARow
// kills one after the other (each but the last replaced by a new one). The
// default, 6, takes about a minute and goes past what broke before (the
// fourth death after three replacements, a leader's death); -churn.deaths 11
// is the ten-replacement run of issue 18 (two minutes).
var churnDeaths = flag.Int("churn.deaths", 6, "deaths in a row in the churn test (each but the last replaced)")

func TestChurnDeathsAndReplacementsInARow(t *testing.T) {
	const rf = 2
	c := newCluster(t)
	live := formCluster(t, c, 5, "-partitions", "16", "-replication-factor", fmt.Sprint(rf))
	waitVoters(t, live, 5)
	dead := map[string]bool{}
	for round := 1; round <= *churnDeaths; round++ {
		leader := leaderOf(t, live)
		// Deaths in a row, not a wave: the previous one is history for
		// the freeze (handled, and older than its at-once window) before
		// the next. Until then the freeze would rightly count them
		// together.
		eventually(t, 30*time.Second, "no failure counted at once on the leader", func() error {
			var st struct {
				FailuresAtOnce int `json:"failures_at_once"`
			}
			if err := leader.GetJSON("/v1/status", &st); err != nil {
				return err
			}
			if st.FailuresAtOnce != 0 {
				return fmt.Errorf("%d failures at once", st.FailuresAtOnce)
			}
			return nil
		})
		victim := without(live, leader)[0]
		if round%4 == 3 {
			victim = leader // now and then the leader dies, and a follower takes over the clocks
		}
		victim.Kill()
		dead[victim.ID] = true
		live = without(live, victim)
		// The death is handled: the victim is failed on every survivor and
		// out of raft (the quorum no longer depends on it), its copies are
		// re-created on live nodes.
		waitFailedAndRemoved(t, live, victim)
		copiesEverywhere(t, live[0], rf, dead)
		notFrozen(t, leaderOf(t, live), fmt.Sprintf("death %d (%s)", round, victim.ID))
		if round == *churnDeaths {
			break
		}
		// A new machine replaces it, under a new node ID.
		repl := c.add(fmt.Sprintf("new%02d", round))
		repl.start("-join", live[0].GossipAddr())
		live = append(live, repl)
		eventually(t, 30*time.Second, repl.ID+" registered alive on every agent", func() error {
			for _, n := range live {
				st, err := n.MemberStatus(repl.ID)
				if err != nil {
					return err
				}
				if st != "alive" {
					return fmt.Errorf("%s sees %s as %s", n.ID, repl.ID, st)
				}
			}
			return nil
		})
		copiesEverywhere(t, live[0], rf, dead)
	}
	// Every dead member is still listed failed (-reap-after is 72h): what
	// no longer counts is their number, not their record.
	ms, err := live[0].Members()
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, m := range ms {
		if m.Status == "failed" {
			failed++
			if !dead[m.ID] {
				t.Errorf("%s is failed but was never killed", m.ID)
			}
		}
	}
	if failed != len(dead) {
		t.Fatalf("%d members listed failed, %d were killed", failed, len(dead))
	}
	// Voters are live agents only.
	servers, err := live[0].RaftServers()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		if dead[s.NodeID] {
			t.Fatalf("raft configuration still has %s, which is dead: %+v", s.NodeID, servers)
		}
	}
}

// failedMetric returns steward_members{status="failed"} from n's metrics.
func failedMetric(n *node) (string, error) {
	resp, err := http.Get("http://" + n.APIAddr() + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, `steward_members{status="failed"} `); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no steward_members{status=\"failed\"} in the metrics of %s", n.ID)
}

// waitForgotten waits until no survivor lists gone as a member and no
// raft configuration has it.
func waitForgotten(t *testing.T, survivors []*node, gone *node, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, gone.ID+" forgotten on every survivor", func() error {
		for _, s := range survivors {
			ms, err := s.Members()
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.ID == gone.ID {
					return fmt.Errorf("%s still lists %s as %s", s.ID, gone.ID, m.Status)
				}
			}
			servers, err := s.RaftServers()
			if err != nil {
				return err
			}
			for _, srv := range servers {
				if srv.NodeID == gone.ID {
					return fmt.Errorf("%s's raft configuration still has %s", s.ID, gone.ID)
				}
			}
		}
		return nil
	})
}

func TestDeadMembersAreForgottenByForceLeaveAndAfterReapAfter(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 4, "-partitions", "16", "-reap-after", "10s")
	leader := leaderOf(t, nodes)
	followers := without(nodes, leader)

	// Refused: an unknown node, and a live one.
	if out, err := runCLI(t, "force-leave", "nobody", "-http-addr", leader.APIAddr()); err == nil || !strings.Contains(out, "not a member") {
		t.Fatalf("force-leave of an unknown node: err %v, output %q", err, out)
	}
	if out, err := runCLI(t, "force-leave", followers[0].ID, "-http-addr", leader.APIAddr()); err == nil || !strings.Contains(out, "is alive") {
		t.Fatalf("force-leave of a live node: err %v, output %q", err, out)
	}
	if st, err := leader.MemberStatus(followers[0].ID); err != nil || st != "alive" {
		t.Fatalf("after a refused force-leave %s is %q (%v)", followers[0].ID, st, err)
	}

	// force-leave forgets a dead member at once.
	gone := followers[0]
	gone.Kill()
	survivors := without(nodes, gone)
	waitFailedAndRemoved(t, survivors, gone)
	if v, err := failedMetric(leader); err != nil || v != "1" {
		t.Fatalf("steward_members{status=\"failed\"} = %q (%v), want 1", v, err)
	}
	out, err := runCLI(t, "force-leave", gone.ID, "-http-addr", followers[1].APIAddr())
	if err != nil {
		t.Fatalf("force-leave %s: %v\n%s", gone.ID, err, out)
	}
	if !strings.Contains(out, "forgotten") {
		t.Fatalf("force-leave output: %q", out)
	}
	waitForgotten(t, survivors, gone, 10*time.Second)
	if v, err := failedMetric(leader); err != nil || v != "0" {
		t.Fatalf("after force-leave steward_members{status=\"failed\"} = %q (%v), want 0", v, err)
	}

	// The reaper forgets one that stays failed for -reap-after. First the
	// voters are whole again (a non-voter promoted in the dead one's place):
	// a second voter's death before that would take the quorum with it.
	waitVoters(t, survivors, 3)
	reaped := followers[1]
	reaped.Kill()
	survivors = without(survivors, reaped)
	waitFailedAndRemoved(t, survivors, reaped) // failed first, not forgotten at once
	waitForgotten(t, survivors, reaped, 60*time.Second)
	if log := leaderOf(t, survivors).Log(); !strings.Contains(log, "longer than -reap-after 10s") {
		t.Fatalf("the leader did not log why it forgot %s", reaped.ID)
	}
}

func TestDeadVotersLeaveRaftWhileRemovalsAreFrozenSoTheQuorumSurvivesTheNextDeath(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "16", "-max-failed", "1")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	followers := without(nodes, leader)
	followers[0].Kill()
	followers[1].Kill()
	waitRemovalsFrozen(t, leader)
	// Frozen, yet the two dead voters leave raft (2 of 5 is within the
	// quorum rule): the quorum no longer depends on them.
	eventually(t, 30*time.Second, "no dead voter in raft", func() error {
		servers, err := leader.RaftServers()
		if err != nil {
			return err
		}
		for _, s := range servers {
			if s.NodeID == followers[0].ID || s.NodeID == followers[1].ID {
				return fmt.Errorf("raft still has %s (voter %v)", s.NodeID, s.Voter)
			}
		}
		return nil
	})
	// A third death: with five voters three dead would have lost the
	// quorum for good; with the dead out, two of three remain.
	followers[2].Kill()
	survivors := []*node{leader, followers[3]}
	eventually(t, 30*time.Second, "a raft write commits after the third death", func() error {
		out, err := runCLI(t, "maintenance", "on", "-http-addr", followers[3].APIAddr())
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	for _, s := range survivors {
		st, err := s.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.LeaderID == "" {
			t.Fatalf("%s knows no leader after the third death", s.ID)
		}
	}
}
