package failover

import (
	"reflect"
	"testing"
)

// A bootstrap entry that carries its table is applied as it is, so that
// agents running different versions of InitialTable still agree.
func TestBootstrapUsesTheTableItCarries(t *testing.T) {
	members := []Member{{ID: "a"}, {ID: "b"}}
	settings := Settings{Partitions: 2, ReplicationFactor: 2}
	table := []Partition{
		{ID: 0, Epoch: 1, Primary: "b", Replicas: []string{"a"}},
		{ID: 1, Epoch: 1, Primary: "a", Replicas: []string{"b"}},
	}
	c := NewCluster()
	if _, err := c.Apply(Command{Kind: CmdBootstrap, Settings: &settings, Members: members, Table: table}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Partitions, table) {
		t.Fatalf("table %+v, want the carried %+v", c.Partitions, table)
	}
}

func TestBootstrapRefusesABadCarriedTable(t *testing.T) {
	members := []Member{{ID: "a"}, {ID: "b"}}
	settings := Settings{Partitions: 2, ReplicationFactor: 2}
	for name, table := range map[string][]Partition{
		"too few partitions": {{ID: 0, Epoch: 1, Primary: "a"}},
		"unknown holder":     {{ID: 0, Epoch: 1, Primary: "a"}, {ID: 1, Epoch: 1, Primary: "zz"}},
		"twice on a node":    {{ID: 0, Epoch: 1, Primary: "a", Replicas: []string{"a"}}, {ID: 1, Epoch: 1, Primary: "b"}},
		"epoch zero":         {{ID: 0, Primary: "a"}, {ID: 1, Epoch: 1, Primary: "b"}},
	} {
		c := NewCluster()
		if _, err := c.Apply(Command{Kind: CmdBootstrap, Settings: &settings, Members: members, Table: table}); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if c.Bootstrapped || len(c.Partitions) != 0 {
			t.Errorf("%s: a refused bootstrap changed the state", name)
		}
	}
}
