package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Health scenarios beyond a plain failure: app health, quorum loss,
// freezes.

// flakyHealth is an app health endpoint the test can fail.
type flakyHealth struct {
	failing atomic.Bool
	srv     *httptest.Server
}

func newFlakyHealth(t *testing.T) *flakyHealth {
	f := &flakyHealth{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.failing.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func primariesOf(n *node, id string) (int, error) {
	pt, err := n.Partitions()
	if err != nil {
		return 0, err
	}
	count := 0
	for _, p := range pt.Partitions {
		if p.Primary == id {
			count++
		}
	}
	return count, nil
}

func TestAnUnhealthyAppLosesItsPrimariesAndGetsThemBack(t *testing.T) {
	c := newCluster(t)
	var nodes []*node
	var health []*flakyHealth
	for i := 1; i <= 4; i++ {
		h := newFlakyHealth(t)
		health = append(health, h)
		nodes = append(nodes, c.add(fmt.Sprintf("node%d", i), "-partitions", "32", "-app-health-url", h.srv.URL+"/healthz"))
	}
	for _, n := range nodes {
		n.start("-bootstrap-expect", "4", "-join", nodes[0].GossipAddr())
	}
	waitSameTable(t, nodes, 60*time.Second)
	sick := nodes[1]
	if p, err := primariesOf(nodes[0], sick.ID); err != nil || p == 0 {
		t.Fatalf("%s leads %d partitions before (err %v)", sick.ID, p, err)
	}
	health[1].failing.Store(true)
	eventually(t, 30*time.Second, "the sick node's primaries moved, it stays a member", func() error {
		p, err := primariesOf(nodes[0], sick.ID)
		if err != nil {
			return err
		}
		if p != 0 {
			return fmt.Errorf("%s still leads %d partitions", sick.ID, p)
		}
		st, err := nodes[0].MemberStatus(sick.ID)
		if err != nil {
			return err
		}
		if st != "alive" {
			return fmt.Errorf("%s is %s; an unhealthy app is no reason to remove its node", sick.ID, st)
		}
		return nil
	})
	health[1].failing.Store(false)
	eventually(t, 30*time.Second, "primaries back on the healed node", func() error {
		p, err := primariesOf(nodes[0], sick.ID)
		if err != nil {
			return err
		}
		if p == 0 {
			return fmt.Errorf("%s leads nothing yet", sick.ID)
		}
		return nil
	})
	checkBalancedEventually(t, nodes[0], ids(nodes))
}

func TestAnAgentWithoutLeaderReportsQuorumLostAndRemovesNobody(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "8")
	leader := leaderOf(t, nodes)
	others := without(nodes, leader)
	survivor := others[0]
	leader.Kill()
	others[1].Kill()
	eventually(t, 30*time.Second, "the survivor reports quorum lost", func() error {
		var st struct {
			Quorum string `json:"quorum"`
		}
		if err := survivor.GetJSON("/v1/status", &st); err != nil {
			return err
		}
		if st.Quorum != "lost" {
			return fmt.Errorf("quorum %q", st.Quorum)
		}
		return nil
	})
	ms, err := survivor.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Status == "failed" {
			t.Fatalf("%s was marked failed without quorum", m.ID)
		}
	}
	resp, err := http.Get("http://" + survivor.APIAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), "steward_quorum_lost 1") {
		t.Fatal("the metric steward_quorum_lost is not 1")
	}
}

func TestTooManyFailuresAtOnceFreezeRemovals(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "16", "-max-failed", "1")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	followers := without(nodes, leader)
	followers[0].Kill()
	followers[1].Kill()
	survivors := without(nodes, followers[0], followers[1])
	waitRemovalsFrozen(t, leader)
	// Detection is not simultaneous: the first death may be confirmed
	// before the second is even suspected, and then it is removed. What the
	// freeze guarantees is that no more than -max-failed members are.
	for _, s := range survivors {
		failed := 0
		for _, gone := range []*node{followers[0], followers[1]} {
			st, err := s.MemberStatus(gone.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st == "failed" {
				failed++
			}
		}
		if failed > 1 {
			t.Fatalf("%s lists %d members failed although -max-failed is 1", s.ID, failed)
		}
	}
	if !strings.Contains(leader.Log(), "automatic removals frozen") {
		t.Fatal("the leader did not log the freeze")
	}
}

func TestMaintenanceModeFreezesRemovalsUntilSwitchedOff(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "16")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	if out, err := runCLI(t, "maintenance", "on", "-http-addr", nodes[2].APIAddr()); err != nil {
		t.Fatalf("maintenance on: %v\n%s", err, out)
	}
	victim := without(nodes, leader)[0]
	victim.Kill()
	survivors := without(nodes, victim)
	eventually(t, 30*time.Second, "the freeze is reported", func() error {
		var st struct {
			Frozen      string `json:"removals_frozen"`
			Maintenance bool   `json:"maintenance"`
		}
		if err := leader.GetJSON("/v1/status", &st); err != nil {
			return err
		}
		if st.Frozen == "" || !st.Maintenance {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	// Long enough for a verdict (the local profile decides within about
	// two seconds), the member is still not failed.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := leader.MemberStatus(victim.ID); err == nil && st == "failed" {
			t.Fatalf("%s marked failed during maintenance", victim.ID)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := runCLI(t, "maintenance", "off", "-http-addr", nodes[2].APIAddr()); err != nil {
		t.Fatalf("maintenance off: %v\n%s", err, out)
	}
	waitFailedAndRemoved(t, survivors, victim)
}

// waitRemovalsFrozen waits until the leader reports automatic removals
// frozen.
func waitRemovalsFrozen(t *testing.T, leader *node) {
	t.Helper()
	eventually(t, 30*time.Second, "removals frozen on the leader", func() error {
		var st struct {
			Frozen string `json:"removals_frozen"`
		}
		if err := leader.GetJSON("/v1/status", &st); err != nil {
			return err
		}
		if st.Frozen == "" {
			return fmt.Errorf("not frozen")
		}
		return nil
	})
}
