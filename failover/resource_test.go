package failover

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func createResource(t testing.TB, c *Cluster, name string, partitions, rf int) {
	t.Helper()
	r := Resource{Name: name, Partitions: partitions, ReplicationFactor: rf}
	mustApply(t, c, Command{Kind: CmdCreateResource, At: 2, Resource: &r, Table: LayoutResource(c, r)})
}

func copiesOf(c *Cluster, resource string) (partitions int, copies map[int]int) {
	copies = map[int]int{}
	for _, p := range c.Partitions {
		if p.Retired || p.ResourceName() != resource {
			continue
		}
		partitions++
		copies[len(p.Holders())]++
	}
	return partitions, copies
}

func TestASecondResourceGetsItsOwnPartitionsAndReplicationFactor(t *testing.T) {
	c := bootstrap(t, 16, 3, nodes(5))
	createResource(t, c, "orders", 8, 2)

	if n, copies := copiesOf(c, "orders"); n != 8 || copies[2] != 8 {
		t.Fatalf("orders: %d partitions, copies %v; want 8 partitions with 2 copies each", n, copies)
	}
	if n, copies := copiesOf(c, DefaultResource); n != 16 || copies[3] != 16 {
		t.Fatalf("default: %d partitions, copies %v; want 16 with 3 copies each", n, copies)
	}
	for _, p := range c.Partitions[16:] {
		if p.Resource != "orders" || p.ID < 16 {
			t.Fatalf("partition %+v: the new resource's IDs follow the table's", p)
		}
	}
	// Each resource is laid out balanced on its own; the planner then
	// evens out the sum with a few moves at most.
	if a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 3), Seed: 1}); len(a) > 2 {
		t.Fatalf("a freshly laid out resource plans %d actions: %v", len(a), a)
	}
	converge(t, c, 4)
	// A node's load is the sum over resources: 16*3 + 8*2 = 64 copies
	// over 5 nodes, 12 or 13 each.
	copies, _ := counts(c)
	for id, n := range copies {
		if n < 12 || n > 13 {
			t.Errorf("%s holds %d copies, want about 64/5", id, n)
		}
	}
}

// A resource created while every app is unhealthy has no member to lay
// its partitions out on. Once apps are healthy again, each gets a new
// empty primary (a copy with no source) whose reason says it never had a
// copy, not that copies were lost; then its replicas come from it.
func TestAResourceCreatedWhileNoAppIsHealthyIsPlacedOnceOneIs(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	for i, id := range c.MemberIDs() {
		mustApply(t, c, Command{Kind: CmdSetAppHealth, At: int64(2 + i), Node: id, AppUnhealthy: true})
	}
	createResource(t, c, "orders", 2, 2)
	if n, copies := copiesOf(c, "orders"); n != 2 || copies[0] != 2 {
		t.Fatalf("orders laid out with no app healthy: %d partitions, copies %v; want 2 with none", n, copies)
	}
	for i, id := range c.MemberIDs() {
		mustApply(t, c, Command{Kind: CmdSetAppHealth, At: int64(10 + i), Node: id})
	}
	starts := 0
	for _, a := range Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 20), Seed: 1}) {
		if a.Kind != ActionStartMigration || c.Partitions[a.Partition].Resource != "orders" {
			continue
		}
		starts++
		if a.Source != "" || !strings.Contains(strings.Join(a.Reasons, "; "), "no copy yet") {
			t.Fatalf("first copy of a never-held partition: %+v", a)
		}
	}
	if starts != 2 {
		t.Fatalf("%d new empty primaries planned, want one per partition of orders", starts)
	}
	converge(t, c, 30)
	if n, copies := copiesOf(c, "orders"); n != 2 || copies[2] != 2 {
		t.Fatalf("orders after converging: %d partitions, copies %v; want 2 with 2 copies each", n, copies)
	}
}

func TestResourceCommandsRefuseBadInputAndChangeNothing(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	createResource(t, c, "orders", 4, 2)
	before, _ := json.Marshal(c)
	bad := []Command{
		{Kind: CmdCreateResource, Resource: &Resource{Name: "orders", Partitions: 2, ReplicationFactor: 1}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: DefaultResource, Partitions: 2, ReplicationFactor: 1}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "bad name", Partitions: 2, ReplicationFactor: 1}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "x", Partitions: 0, ReplicationFactor: 1}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "x", Partitions: MaxPartitions, ReplicationFactor: 1}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "x", Partitions: 2, ReplicationFactor: 1}, Table: []Partition{{ID: 0, Epoch: 1}}},
		{Kind: CmdDeleteResource, Resource: &Resource{Name: DefaultResource}},
		{Kind: CmdDeleteResource, Resource: &Resource{Name: "nope"}},
		{Kind: CmdSetReplicationFactor, Resource: &Resource{Name: "orders", ReplicationFactor: 0}},
		{Kind: CmdSetReplicationFactor, Resource: &Resource{Name: "nope", ReplicationFactor: 2}},
		{Kind: CmdSetTargetSize, Resource: &Resource{Name: "orders", TargetSize: -1}},
		{Kind: CmdSetTargetSize, Resource: &Resource{Name: "nope", TargetSize: 10}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "x", Partitions: 2, ReplicationFactor: 1, TargetSize: -5}},
	}
	for _, cmd := range bad {
		if _, err := c.Apply(cmd); err == nil {
			t.Errorf("%s %+v applied", cmd.Kind, *cmd.Resource)
		}
	}
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Fatalf("refused commands changed the cluster")
	}
	mustApply(t, c, Command{Kind: CmdSetTargetSize, Resource: &Resource{Name: DefaultResource, TargetSize: 4096}})
	mustApply(t, c, Command{Kind: CmdSetTargetSize, Resource: &Resource{Name: "orders", TargetSize: 8192}})
	if rs := c.ResourceList(); rs[0].TargetSize != 4096 || rs[1].TargetSize != 8192 {
		t.Fatalf("target sizes: %+v", rs)
	}
	_, err := c.Apply(Command{Kind: CmdDeleteResource, Resource: &Resource{Name: "nope"}})
	if !errors.Is(err, ErrUnknownResource) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("error %v does not name the unknown resource", err)
	}
}

func TestRaisingAndLoweringAResourcesReplicationFactorAddsBeforeItRemoves(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(4))
	createResource(t, c, "orders", 6, 1)

	mustApply(t, c, Command{Kind: CmdSetReplicationFactor, At: 3, Resource: &Resource{Name: "orders", ReplicationFactor: 3}})
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 4), Seed: 1})
	if k := kinds(acts); k[ActionStartMigration] == 0 || k[ActionRemoveReplica] != 0 {
		t.Fatalf("raising RF planned %v, want only new copies", k)
	}
	for _, a := range acts {
		if a.Kind == ActionStartMigration && c.Partitions[a.Partition].Resource != "orders" {
			t.Fatalf("raising orders' RF copies partition %d of %q", a.Partition, c.Partitions[a.Partition].ResourceName())
		}
	}
	converge(t, c, 5)
	if _, copies := copiesOf(c, "orders"); copies[3] != 6 {
		t.Fatalf("after raising RF to 3: copies %v", copies)
	}
	if _, copies := copiesOf(c, DefaultResource); copies[2] != 8 {
		t.Fatalf("the default resource changed: copies %v", copies)
	}

	mustApply(t, c, Command{Kind: CmdSetReplicationFactor, At: 6, Resource: &Resource{Name: "orders", ReplicationFactor: 1}})
	converge(t, c, 7)
	if _, copies := copiesOf(c, "orders"); copies[1] != 6 {
		t.Fatalf("after lowering RF to 1: copies %v", copies)
	}
	for _, p := range c.Partitions {
		if p.Primary == "" && !p.Retired {
			t.Fatalf("partition %d lost its primary", p.ID)
		}
	}

	// The default resource's RF changes the same way; its bootstrap
	// setting stays as it was, for the flags to be checked against.
	mustApply(t, c, Command{Kind: CmdSetReplicationFactor, At: 8, Resource: &Resource{Name: DefaultResource, ReplicationFactor: 3}})
	converge(t, c, 9)
	if _, copies := copiesOf(c, DefaultResource); copies[3] != 8 || c.Settings.ReplicationFactor != 2 || c.ResourceList()[0].ReplicationFactor != 3 {
		t.Fatalf("default after RF 3: copies %v, settings %+v", copies, c.Settings)
	}
}

func TestDeletingAResourceRetiresItsPartitionsForGood(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	createResource(t, c, "orders", 4, 2)
	res := mustApply(t, c, Command{Kind: CmdDeleteResource, At: 3, Resource: &Resource{Name: "orders"}})
	if len(res.Changed) != 4 {
		t.Fatalf("delete changed %v, want the 4 partitions of orders", res.Changed)
	}
	for _, p := range c.Partitions[4:] {
		if !p.Retired || len(p.Holders()) != 0 {
			t.Fatalf("partition %d after delete: %+v", p.ID, p)
		}
	}
	if a := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 4), Seed: 1}); len(a) != 0 {
		t.Fatalf("retired partitions are planned for: %v", a)
	}
	// A new resource of the same name gets new IDs.
	createResource(t, c, "orders", 2, 1)
	if got := c.Partitions[len(c.Partitions)-1].ID; got != 9 {
		t.Fatalf("the recreated resource's last partition is %d, want 9 (IDs are never reused)", got)
	}
}

func TestATableWrittenBeforeResourcesDecodesAsTheDefaultResource(t *testing.T) {
	// A snapshot of the cluster as agents wrote it before resources
	// existed: no resource names, no key ranges, no resources list.
	old := `{"bootstrapped":true,"settings":{"partitions":2,"replication_factor":1},
	 "members":{"n1":{"id":"n1","status":"alive","voter":true,"incarnation":1}},
	 "partitions":[{"id":0,"epoch":1,"primary":"n1","replicas":[]},{"id":1,"epoch":1,"primary":"n1","replicas":[]}],
	 "next_migration":0}`
	c := NewCluster()
	if err := json.Unmarshal([]byte(old), c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("old table: %v", err)
	}
	rs := c.ResourceList()
	if len(rs) != 1 || rs[0] != (Resource{Name: DefaultResource, Partitions: 2, ReplicationFactor: 1}) {
		t.Fatalf("resources of an old table: %+v", rs)
	}
	rows := c.WithKeyRanges()
	if rows[0].KeyStart != 0 || rows[0].KeyEnd != KeySpace/2 || rows[1].KeyStart != KeySpace/2 || rows[1].KeyEnd != KeySpace {
		t.Fatalf("implied key ranges: %+v", rows)
	}
	// And the old entries still apply on it.
	mustApply(t, c, Command{Kind: CmdUpsertMember, At: 5, Member: &Member{ID: "n2"}})
	converge(t, c, 6)
}

func TestEveryKeyMapsToExactlyOnePartitionOfItsResource(t *testing.T) {
	c := bootstrap(t, 7, 1, nodes(2))
	createResource(t, c, "orders", 3, 1)
	rows := c.WithKeyRanges()
	for i := 0; i < 2000; i++ {
		key := "key-" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('0'+i%10))
		for res, lo, hi := DefaultResource, 0, 7; ; res, lo, hi = "orders", 7, 10 {
			p, ok := PartitionForKey(rows, res, key)
			if !ok || p.ID < lo || p.ID >= hi {
				t.Fatalf("key %q of %s maps to %+v (%v)", key, res, p, ok)
			}
			if res == "orders" {
				break
			}
		}
	}
	if _, ok := PartitionForKey(rows, "nope", "k"); ok {
		t.Fatal("a key of an unknown resource found a partition")
	}
}
