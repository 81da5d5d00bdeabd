package failover

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// scenario is a story told to the planner; its transcript (every plan with
// its reasons, then the balance once converged) is compared with
// testdata/<name>.golden.
type scenario struct {
	name  string
	rf    int
	parts int
	nodes []node
	story func(s *story)
}

type story struct {
	t   *testing.T
	c   *Cluster
	now int64
	out bytes.Buffer
}

func (s *story) logf(format string, args ...any) { fmt.Fprintf(&s.out, format+"\n", args...) }

func (s *story) actions(title string, acts []Action) {
	s.logf("## %s: %d actions", title, len(acts))
	for _, a := range acts {
		line := fmt.Sprintf("%-17s p%-3d @%d node=%s", a.Kind, a.Partition, a.Epoch, a.Node)
		if a.Source != "" {
			line += " source=" + a.Source
		}
		if a.Replaces != "" {
			line += " replaces=" + a.Replaces
		}
		s.logf("%s prio=%d: %s", line, a.Priority, strings.Join(a.Reasons, "; "))
	}
}

// fail marks id failed with its promotions in one command, as the leader does.
func (s *story) fail(id string) {
	s.now += 1e9
	acts := PlanFailure(s.c, id, 1)
	s.actions("fail "+id+" (promotions in the same entry)", acts)
	res := setStatus(s.t, s.c, s.now, id, StatusFailed, acts)
	if res.Stale != 0 || res.Applied != len(acts) {
		s.t.Fatalf("promotions for %s: %+v", id, res)
	}
}

// restart marks id restarting with its promotions in one command, as its
// agent does for a planned restart.
func (s *story) restart(id string) {
	s.now += 1e9
	acts := PlanStatus(s.c, id, StatusRestarting, 1)
	s.actions("restart "+id+" (promotions in the same entry)", acts)
	res := mustApply(s.t, s.c, Command{Kind: CmdRestartMember, At: s.now, Node: id, RestartGrace: int64(time.Minute), Actions: acts})
	if res.Stale != 0 || res.Applied != len(acts) {
		s.t.Fatalf("promotions for %s: %+v", id, res)
	}
}

// back takes the restarting id back, as its agent does once it runs again.
func (s *story) back(id string) {
	s.now += 1e9
	mustApply(s.t, s.c, Command{Kind: CmdRestartBack, At: s.now, Node: id})
	s.logf("## %s back (incarnation %d)", id, s.c.Members[id].Incarnation)
}

// plan plans once with the default limits and applies the plan.
func (s *story) plan(title string) []Action {
	s.now += 1e9
	acts := Plan(PlanInput{Cluster: s.c, Ages: AgesAt(s.c, s.now), Seed: 1, Limits: DefaultLimits()})
	s.actions(title, acts)
	mustApply(s.t, s.c, Command{Kind: CmdApplyActions, At: s.now, Actions: acts})
	return acts
}

// settle converges and prints the balance.
func (s *story) settle() {
	s.now += 1e9
	rounds := converge(s.t, s.c, s.now)
	b := Balance(s.c)
	s.logf("## converged after %d rounds", rounds)
	for _, n := range b.Nodes {
		s.logf("%-4s zone=%-2q w=%d %-8s copies=%-3d (share %5.1f) primaries=%-3d (share %5.1f)",
			n.ID, n.Zone, n.Weight, s.c.Members[n.ID].Status, n.Copies, n.CopyShare, n.Primaries, n.PrimaryShare)
	}
	s.logf("copies max/share %.3f, primaries max/share %.3f", b.Copies.MaxOverShare, b.Primaries.MaxOverShare)
}

// checkGolden compares a transcript with testdata/<name>.golden, or
// writes it there with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("transcript differs from %s (run with -update if the change is intended):\n%s", path, got)
	}
}

func TestScenariosGolden(t *testing.T) {
	scenarios := []scenario{
		{name: "one_failure", rf: 3, parts: 24, nodes: nodes(5), story: func(s *story) {
			s.fail("n03")
			s.plan("replace the copies of n03")
			s.settle()
		}},
		{name: "two_failures", rf: 3, parts: 24, nodes: nodes(6), story: func(s *story) {
			s.fail("n02")
			s.fail("n05")
			s.plan("replace the copies of n02 and n05")
			s.settle()
		}},
		{name: "leader_node", rf: 3, parts: 16, nodes: nodes(5), story: func(s *story) {
			// The leader's node is any node to the planner: fail the one
			// with the most primaries.
			_, prims := counts(s.c)
			most := "n01"
			for _, id := range s.c.MemberIDs() {
				if prims[id] > prims[most] {
					most = id
				}
			}
			s.fail(most)
			s.settle()
		}},
		{name: "zones", rf: 3, parts: 18, nodes: zoned(6, "a", "b", "c"), story: func(s *story) {
			s.fail("n02") // zone b: its copies must go to n05, the other node of zone b
			s.plan("replace within zone b")
			s.settle()
		}},
		{name: "weights", rf: 2, parts: 24, nodes: []node{{id: "n01", weight: 1}, {id: "n02", weight: 1}, {id: "n03", weight: 2}}, story: func(s *story) {
			s.settle()
			join(s.t, s.c, s.now, node{id: "n04", weight: 4})
			s.plan("join n04 (weight 4)")
			s.settle()
		}},
		{name: "app_unhealthy", rf: 2, parts: 12, nodes: nodes(4), story: func(s *story) {
			mustApply(s.t, s.c, Command{Kind: CmdSetAppHealth, At: s.now, Node: "n02", AppUnhealthy: true})
			s.plan("n02's app is unhealthy: move its primaries")
			s.settle()
		}},
		{name: "leaving", rf: 2, parts: 12, nodes: nodes(4), story: func(s *story) {
			s.now += 1e9
			acts := PlanStatus(s.c, "n01", StatusLeaving, 1)
			s.actions("n01 leaving (promotions in the same entry)", acts)
			setStatus(s.t, s.c, s.now, "n01", StatusLeaving, acts)
			s.plan("drain n01")
			s.settle()
		}},
		{name: "restart", rf: 3, parts: 16, nodes: nodes(5), story: func(s *story) {
			s.restart("n02")
			s.plan("n02 away: copies kept, nothing copied")
			s.settle()
			s.back("n02")
			s.plan("n02 back: primaries come back")
			s.settle()
		}},
		{name: "restart_overstays", rf: 3, parts: 16, nodes: nodes(5), story: func(s *story) {
			s.restart("n02")
			s.fail("n02") // the leader's verdict once the grace is over
			s.plan("n02 past its grace: its copies are re-created")
			s.settle()
		}},
		{name: "join", rf: 3, parts: 32, nodes: nodes(4), story: func(s *story) {
			join(s.t, s.c, s.now, node{id: "n05"})
			s.plan("join n05")
			s.settle()
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			s := &story{t: t, c: bootstrap(t, sc.parts, sc.rf, sc.nodes), now: 1}
			s.logf("# %s: %d partitions, RF %d, %d nodes", sc.name, sc.parts, sc.rf, len(sc.nodes))
			if acts := Plan(PlanInput{Cluster: s.c, Seed: 1}); len(acts) != 0 {
				t.Fatalf("the initial table is not a fixed point: %v", acts)
			}
			sc.story(s)
			checkGolden(t, sc.name, s.out.Bytes())
		})
	}
}
