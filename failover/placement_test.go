package failover

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// tag gives members tags, as their agents' -tags do (CmdSetTags).
func tag(t testing.TB, c *Cluster, tags string, ids ...string) {
	t.Helper()
	parsed, err := ParseTags(tags)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		mustApply(t, c, Command{Kind: CmdSetTags, At: 2, Node: id, Tags: parsed})
	}
}

func createPlaced(t testing.TB, c *Cluster, r Resource) {
	t.Helper()
	mustApply(t, c, Command{Kind: CmdCreateResource, At: 2, Resource: &r, Table: LayoutResource(c, r)})
}

// holdersOf counts the copies of resource's partitions per node.
func holdersOf(c *Cluster, resource string) map[string]int {
	out := map[string]int{}
	for _, p := range c.Partitions {
		if p.Retired || p.ResourceName() != resource {
			continue
		}
		for _, h := range p.Holders() {
			out[h]++
		}
	}
	return out
}

func onlyOn(t *testing.T, c *Cluster, resource string, allowed ...string) {
	t.Helper()
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	for id, n := range holdersOf(c, resource) {
		if !ok[id] {
			t.Fatalf("%s holds %d copies of %s, whose selector allows only %v", id, n, resource, allowed)
		}
	}
}

func TestAResourcePinnedBySelectorLivesOnlyOnTheTaggedNodes(t *testing.T) {
	c := bootstrap(t, 12, 2, nodes(6))
	tag(t, c, "disk=ssd", "n01", "n02", "n03")
	createPlaced(t, c, Resource{Name: "hot", Partitions: 9, ReplicationFactor: 2, Nodes: "disk=ssd"})

	onlyOn(t, c, "hot", "n01", "n02", "n03")
	if _, copies := copiesOf(c, "hot"); copies[2] != 9 {
		t.Fatalf("hot copies %v, want 2 copies of each of its 9 partitions", copies)
	}
	converge(t, c, 3)
	onlyOn(t, c, "hot", "n01", "n02", "n03")
	// Each resource is balanced over the nodes it may use: 18 copies of
	// hot over three nodes, 24 of default over six. (Node totals are not
	// evened out across resources: n01-n03 hold 10, the others 4.)
	for id, n := range holdersOf(c, "hot") {
		if n != 6 {
			t.Errorf("%s holds %d copies of hot, want 6", id, n)
		}
	}
	for id, n := range holdersOf(c, DefaultResource) {
		if n != 4 {
			t.Errorf("%s holds %d copies of default, want 4", id, n)
		}
	}

	// A tagged node fails: its copies of hot go to the other tagged nodes
	// only.
	fail(t, c, 4, "n01")
	converge(t, c, 1<<40)
	onlyOn(t, c, "hot", "n02", "n03")
	if _, copies := copiesOf(c, "hot"); copies[2] != 9 {
		t.Fatalf("after n01 failed: hot copies %v, want 2 each on n02 and n03", copies)
	}
}

func TestASelectorMatchingTooFewNodesLeavesTheResourceUnderReplicated(t *testing.T) {
	c := bootstrap(t, 6, 2, nodes(5))
	tag(t, c, "rack=a", "n04", "n05")
	createPlaced(t, c, Resource{Name: "wide", Partitions: 4, ReplicationFactor: 3, Nodes: "rack=a"})
	converge(t, c, 3)

	onlyOn(t, c, "wide", "n04", "n05")
	if _, copies := copiesOf(c, "wide"); copies[2] != 4 {
		t.Fatalf("wide copies %v, want 2 copies each (two nodes match, RF 3)", copies)
	}
	under := 0
	for _, id := range c.UnderReplicated() {
		if c.Partitions[id].Resource == "wide" {
			under++
		}
	}
	if under != 4 {
		t.Fatalf("%d partitions of wide reported under-replicated, want 4", under)
	}

	// A third node gets the tag: the missing copies go there.
	tag(t, c, "rack=a", "n01")
	converge(t, c, 4)
	onlyOn(t, c, "wide", "n01", "n04", "n05")
	if _, copies := copiesOf(c, "wide"); copies[3] != 4 {
		t.Fatalf("after tagging n01: wide copies %v, want 3 each", copies)
	}
}

func TestChangingASelectorMovesTheCopiesAddBeforeRemove(t *testing.T) {
	c := bootstrap(t, 8, 2, nodes(6))
	tag(t, c, "pool=blue", "n01", "n02", "n03")
	tag(t, c, "pool=green", "n04", "n05", "n06")
	createPlaced(t, c, Resource{Name: "orders", Partitions: 6, ReplicationFactor: 2, Nodes: "pool=blue"})
	converge(t, c, 3)
	onlyOn(t, c, "orders", "n01", "n02", "n03")

	mustApply(t, c, Command{Kind: CmdSetPlacement, At: 4, Resource: &Resource{Name: "orders", Nodes: "pool=green"}})
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 5), Seed: 1})
	if len(acts) == 0 {
		t.Fatal("a new selector planned nothing")
	}
	for _, a := range acts {
		if c.Partitions[a.Partition].Resource != "orders" {
			continue
		}
		switch a.Kind {
		case ActionRemoveReplica:
			t.Fatalf("the first plan removes a copy of partition %d before its new copy exists: %+v", a.Partition, a)
		case ActionStartMigration:
			if a.Replaces == "" || a.Node < "n04" {
				t.Fatalf("migration %+v: want a copy on a green node replacing a blue one", a)
			}
		}
	}
	// Every step keeps both copies of each partition: a copy leaves a blue
	// node only once its green replacement is acknowledged.
	for round := 0; round < 100; round++ {
		acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 6), Seed: 1})
		if len(acts) == 0 {
			break
		}
		mustApply(t, c, Command{Kind: CmdApplyActions, At: 6, Actions: acts})
		for _, p := range c.Partitions {
			if p.Resource == "orders" && len(p.Holders()) < 2 {
				t.Fatalf("round %d: partition %d down to %v", round, p.ID, p.Holders())
			}
		}
		if acks := AcknowledgeAll(c); len(acks) > 0 {
			mustApply(t, c, Command{Kind: CmdApplyActions, At: 6, Actions: acks})
		}
	}
	onlyOn(t, c, "orders", "n04", "n05", "n06")
	if _, copies := copiesOf(c, "orders"); copies[2] != 6 {
		t.Fatalf("after the move: orders copies %v", copies)
	}
}

func TestZonesRulesPerResource(t *testing.T) {
	// Two zones, RF 3: spread puts two copies in one zone and one in the
	// other; strict keeps one per zone (under-replicated); none ignores
	// the zones.
	c := bootstrap(t, 4, 2, zoned(6, "a", "b"))
	createPlaced(t, c, Resource{Name: "spread", Partitions: 4, ReplicationFactor: 3})
	createPlaced(t, c, Resource{Name: "strict", Partitions: 4, ReplicationFactor: 3, Zones: ZonesStrict})
	createPlaced(t, c, Resource{Name: "loose", Partitions: 4, ReplicationFactor: 2, Zones: ZonesNone})
	converge(t, c, 3)

	perZone := func(p Partition) map[string]int {
		out := map[string]int{}
		for _, h := range p.Holders() {
			out[c.Members[h].Zone]++
		}
		return out
	}
	for _, p := range c.Partitions {
		z := perZone(p)
		switch p.Resource {
		case "spread":
			if len(p.Holders()) != 3 || z["a"] == 0 || z["b"] == 0 {
				t.Errorf("spread partition %d: %v", p.ID, z)
			}
		case "strict":
			if len(p.Holders()) != 2 || z["a"] != 1 || z["b"] != 1 {
				t.Errorf("strict partition %d: %v, want one copy per zone", p.ID, z)
			}
		case "loose":
			if len(p.Holders()) != 2 {
				t.Errorf("loose partition %d: %v", p.ID, p.Holders())
			}
		}
	}
	if got := c.ResourceList(); got[2].Name != "spread" || got[3].Zones != ZonesStrict || got[1].Zones != ZonesNone {
		t.Fatalf("resource list %+v", got)
	}

	// A resource switched to strict with a partition whose two copies share a
	// zone moves one of them to the other zone.
	c2 := bootstrap(t, 2, 2, zoned(4, "a", "b"))
	createPlaced(t, c2, Resource{Name: "r", Partitions: 1, ReplicationFactor: 2, Zones: ZonesNone})
	pi := len(c2.Partitions) - 1
	part := c2.Partitions[pi]
	other := ""
	for _, id := range c2.MemberIDs() {
		if c2.Members[id].Zone == c2.Members[part.Primary].Zone && !part.Holds(id) {
			other = id
		}
	}
	// Put the replica in the primary's zone by hand (zones none allows it).
	mustApply(t, c2, Command{Kind: CmdApplyActions, At: 3, Actions: []Action{{Kind: ActionStartMigration, Partition: pi, Epoch: part.Epoch, Node: other, Source: part.Primary, Replaces: part.Replicas[0]}}})
	mustApply(t, c2, Command{Kind: CmdApplyActions, At: 3, Actions: AcknowledgeAll(c2)})
	if z := c2.Members[c2.Partitions[pi].Replicas[0]].Zone; z != c2.Members[c2.Partitions[pi].Primary].Zone {
		t.Fatalf("setup: copies in zones %s and %s", z, c2.Members[c2.Partitions[pi].Primary].Zone)
	}
	for _, a := range Plan(PlanInput{Cluster: c2, Ages: AgesAt(c2, 4), Seed: 1}) {
		if a.Partition == pi && a.Kind != ActionPromote {
			t.Fatalf("zones none: two copies in one zone planned %v", a)
		}
	}
	mustApply(t, c2, Command{Kind: CmdSetPlacement, At: 5, Resource: &Resource{Name: "r", Zones: ZonesStrict}})
	converge(t, c2, 6)
	p := c2.Partitions[pi]
	if len(p.Holders()) != 2 || c2.Members[p.Primary].Zone == c2.Members[p.Replicas[0]].Zone {
		t.Fatalf("strict: partition holds %v in zones %s/%s", p.Holders(), c2.Members[p.Primary].Zone, c2.Members[p.Replicas[0]].Zone)
	}
}

func TestPlacementCommandsRefuseBadInputAndChangeNothing(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	createResource(t, c, "orders", 4, 2)
	before, _ := json.Marshal(c)
	bad := []Command{
		{Kind: CmdSetPlacement, Resource: &Resource{Name: "orders", Zones: "everywhere"}},
		{Kind: CmdSetPlacement, Resource: &Resource{Name: "orders", Nodes: "disk"}},
		{Kind: CmdSetPlacement, Resource: &Resource{Name: "orders", Nodes: "disk=ssd,disk=hdd"}},
		{Kind: CmdSetPlacement, Resource: &Resource{Name: "orders", Nodes: "z=1,a=2"}}, // not canonical
		{Kind: CmdSetPlacement, Resource: &Resource{Name: "orders", Nodes: "a b=c"}},
		{Kind: CmdSetPlacement, Resource: &Resource{Name: "nope", Nodes: "a=b"}},
		{Kind: CmdSetPlacement},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "x", Partitions: 2, ReplicationFactor: 1, Zones: "some"}},
		{Kind: CmdCreateResource, Resource: &Resource{Name: "x", Partitions: 2, ReplicationFactor: 1, Nodes: "=v"}},
		{Kind: CmdSetTags, Node: "n01", Tags: map[string]string{"bad key": "v"}},
		{Kind: CmdSetTags, Node: "n01", Tags: map[string]string{"k": "a,b"}},
		{Kind: CmdSetTags, Node: "nope", Tags: map[string]string{"k": "v"}},
	}
	for _, cmd := range bad {
		if _, err := c.Apply(cmd); err == nil {
			t.Errorf("%s %+v %v applied", cmd.Kind, cmd.Resource, cmd.Tags)
		}
	}
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Fatal("a refused command changed the state")
	}
	for _, s := range []string{"disk", "a=1,a=2", "=x", "k=v w"} {
		if _, err := ParseNodeSelector(s); err == nil {
			t.Errorf("selector %q parsed", s)
		}
		if _, err := ParseTags(s); err == nil {
			t.Errorf("tags %q parsed", s)
		}
	}
	if _, err := ParseZonesRule("spreads"); err == nil {
		t.Error("zones rule spreads parsed")
	}
	if got, _ := CanonicalNodeSelector(" z=1, a=2 "); got != "a=2,z=1" {
		t.Errorf("canonical selector %q", got)
	}
}

func TestPinsAndReplacementsMustMatchTheResourcesSelector(t *testing.T) {
	c := bootstrap(t, 2, 1, nodes(4))
	tag(t, c, "disk=ssd", "n01", "n02")
	createPlaced(t, c, Resource{Name: "hot", Partitions: 2, ReplicationFactor: 1, Nodes: "disk=ssd"})
	converge(t, c, 3)
	hot := len(c.Partitions) - 1
	if err := c.CheckPin(PinChange{Partition: hot, Node: "n03"}); err == nil || !strings.Contains(err.Error(), "disk=ssd") {
		t.Fatalf("pin of hot on untagged n03: %v, want a refusal naming the selector", err)
	}
	if err := c.CheckPin(PinChange{Partition: hot, Node: "n02"}); err != nil {
		t.Fatalf("pin of hot on tagged n02: %v", err)
	}
	holder := c.Partitions[hot].Primary
	if err := c.CheckReplace(holder, "n04"); err == nil || !strings.Contains(err.Error(), "disk=ssd") {
		t.Fatalf("replacing %s (holds hot) by untagged n04: %v, want a refusal naming the selector", holder, err)
	}
	other := "n01"
	if holder == "n01" {
		other = "n02"
	}
	if err := c.CheckReplace(holder, other); err != nil {
		t.Fatalf("replacing %s by tagged %s: %v", holder, other, err)
	}
}

func TestARegistrationKeepsTheTagsItsAgentSet(t *testing.T) {
	c := bootstrap(t, 4, 2, nodes(3))
	tag(t, c, "disk=ssd,rack=r1", "n02")
	// Registration from gossip carries no tags: an update of the member's
	// addresses, or a rejoin, keeps what its agent set.
	mustApply(t, c, Command{Kind: CmdUpsertMember, At: 3, Member: &Member{ID: "n02", APIAddr: "127.0.0.1:1"}})
	want := map[string]string{"disk": "ssd", "rack": "r1"}
	if got := c.Members["n02"].Tags; !reflect.DeepEqual(got, want) {
		t.Fatalf("tags after an update %v, want %v", got, want)
	}
	mustApply(t, c, Command{Kind: CmdSetTags, At: 4, Node: "n02"})
	if got := c.Members["n02"].Tags; got != nil {
		t.Fatalf("tags after clearing %v", got)
	}
}

func TestAStateWrittenBeforePlacementsDecodesWithTheDefaults(t *testing.T) {
	// A snapshot fragment and a create_resource entry as written before
	// placements existed.
	var c Cluster
	old := `{"bootstrapped":true,"settings":{"partitions":1,"replication_factor":1},
		"resources":[{"name":"orders","partitions":1,"replication_factor":1}],
		"members":{"n1":{"id":"n1","status":"alive","voter":true,"incarnation":1}},
		"partitions":[{"id":0,"epoch":1,"primary":"n1","replicas":[]},
			{"id":1,"epoch":1,"primary":"n1","replicas":[],"resource":"orders","key_end":4294967296}]}`
	if err := json.Unmarshal([]byte(old), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{DefaultResource, "orders"} {
		if pl := c.PlacementOf(name); pl != (Placement{Zones: ZonesSpread}) {
			t.Errorf("%s: placement %+v, want spread over every node", name, pl)
		}
	}
	if a := Plan(PlanInput{Cluster: &c, Ages: AgesAt(&c, 2), Seed: 1}); len(a) != 0 {
		t.Fatalf("an old state plans %v", a)
	}
	var cmd Command
	if err := json.Unmarshal([]byte(`{"kind":"create_resource","at":5,"resource":{"name":"x","partitions":2,"replication_factor":1}}`), &cmd); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(cmd); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Resource("x"); r.Zones != "" || r.Nodes != "" {
		t.Fatalf("old create_resource: %+v", r)
	}
}

func TestASpreadOnlyClusterPlansAsBeforePlacementsExisted(t *testing.T) {
	// Setting the default placement explicitly (spread, every node) is the
	// same as never setting it: the same plans, action for action.
	for _, seed := range []int64{1, 2, 3} {
		a := bootstrap(t, 32, 3, zoned(7, "x", "y", "z"))
		createResource(t, a, "orders", 16, 2)
		fail(t, a, 3, "n02")
		b := a.Clone()
		mustApply(t, b, Command{Kind: CmdSetPlacement, At: 3, Resource: &Resource{Name: "orders", Zones: ZonesSpread}})
		pa := Plan(PlanInput{Cluster: a, Ages: AgesAt(a, 1<<40), Seed: seed})
		pb := Plan(PlanInput{Cluster: b, Ages: AgesAt(b, 1<<40), Seed: seed})
		if fmt.Sprint(pa) != fmt.Sprint(pb) {
			t.Fatalf("seed %d: plans differ:\n%v\n%v", seed, pa, pb)
		}
	}
}
