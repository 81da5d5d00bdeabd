package failover

import (
	"fmt"
	"testing"
)

// node describes a member for the test clusters.
type node struct {
	id     string
	zone   string
	weight int
}

func nodes(n int) []node {
	out := make([]node, n)
	for i := range out {
		out[i] = node{id: fmt.Sprintf("n%02d", i+1)}
	}
	return out
}

func zoned(n int, zones ...string) []node {
	out := nodes(n)
	for i := range out {
		out[i].zone = zones[i%len(zones)]
	}
	return out
}

// bootstrap returns a bootstrapped cluster over ns.
func bootstrap(t testing.TB, partitions, rf int, ns []node) *Cluster {
	t.Helper()
	c := NewCluster()
	var ms []Member
	for _, n := range ns {
		ms = append(ms, Member{ID: n.id, Zone: n.zone, Weight: n.weight})
	}
	if _, err := c.Apply(Command{Kind: CmdBootstrap, At: 1, Settings: &Settings{Partitions: partitions, ReplicationFactor: rf}, Members: ms}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return c
}

func mustApply(t testing.TB, c *Cluster, cmd Command) Result {
	t.Helper()
	res, err := c.Apply(cmd)
	if err != nil {
		t.Fatalf("apply %s: %v", cmd.Kind, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("after %s: %v", cmd.Kind, err)
	}
	return res
}

func join(t testing.TB, c *Cluster, at int64, n node) {
	t.Helper()
	mustApply(t, c, Command{Kind: CmdUpsertMember, At: at, Member: &Member{ID: n.id, Zone: n.zone, Weight: n.weight}})
}

func setStatus(t testing.TB, c *Cluster, at int64, id string, s MemberStatus, actions []Action) Result {
	t.Helper()
	return mustApply(t, c, Command{Kind: CmdSetStatus, At: at, Node: id, Status: s, Actions: actions})
}

// fail marks id failed together with its promotions, as the leader does.
func fail(t testing.TB, c *Cluster, at int64, id string) Result {
	t.Helper()
	return setStatus(t, c, at, id, StatusFailed, PlanFailure(c, id, 7))
}

// unlimited converges without throttling, as tests want the end state.
func converge(t testing.TB, c *Cluster, now int64) int {
	t.Helper()
	rounds := Converge(c, PlanInput{Ages: AgesAt(c, now), Seed: 42}, now)
	if rounds < 0 {
		t.Fatalf("planner did not converge")
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("after converge: %v", err)
	}
	return rounds
}

// counts returns copies and primaries per node ID.
func counts(c *Cluster) (copies, prims map[string]int) {
	copies, prims = map[string]int{}, map[string]int{}
	for _, p := range c.Partitions {
		for _, h := range p.Holders() {
			copies[h]++
		}
		if p.Primary != "" {
			prims[p.Primary]++
		}
	}
	return copies, prims
}
