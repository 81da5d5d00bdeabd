package failover

import "testing"

// A copy source must have what the partition holds. A holder back from a
// failure has not: the writes made while it was away reach it only when
// its app re-syncs, on node.rejoin, and until the app has acknowledged
// that its agent announces it unhealthy. A copy taken from it then would
// lack those writes for good. So a holder whose app is unhealthy is no
// copy source while another holder could be, even one that is busy: the
// copy waits for it.
func TestAHolderWhoseAppHasNotCaughtUpIsNoCopySourceWhileAnotherHolderCouldBe(t *testing.T) {
	c := bootstrap(t, 64, 2, nodes(3))
	lim := DefaultLimits()
	lim.MaxMigrationsPerNode = 1

	// n02 is back from a failure and its app has not acknowledged
	// node.rejoin; six nodes join, and copies move to them, more at once
	// than n01 and n03 alone can give.
	mustApply(t, c, Command{Kind: CmdSetAppHealth, At: 5, Node: "n02", AppUnhealthy: true})
	for i, id := range []string{"n04", "n05", "n06", "n07", "n08", "n09"} {
		join(t, c, int64(6+i), node{id: id})
	}
	acts := Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 20), Limits: lim})
	copies := 0
	for _, a := range acts {
		if a.Kind != ActionStartMigration {
			continue
		}
		copies++
		if a.Source == "n02" {
			t.Fatalf("a copy from n02, whose app has not caught up: %+v", a)
		}
	}
	if copies == 0 {
		t.Fatal("no copy to the new nodes; the test proves nothing")
	}

	// Once its app has caught up, n02 is a source like the others.
	mustApply(t, c, Command{Kind: CmdSetAppHealth, At: 21, Node: "n02", AppUnhealthy: false})
	from := 0
	for _, a := range Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 22), Limits: lim}) {
		if a.Kind == ActionStartMigration && a.Source == "n02" {
			from++
		}
	}
	if from == 0 {
		t.Fatal("no copy from n02 once its app is healthy")
	}
}

// When every holder's app is unhealthy, one of them is the source all the
// same: no other copy has more, and an app that is only unhealthy (not
// down) may still give it.
func TestACopyComesFromAnUnhealthyHolderWhenNoOtherHolderIsLeft(t *testing.T) {
	c := bootstrap(t, 16, 2, nodes(3))
	mustApply(t, c, Command{Kind: CmdSetAppHealth, At: 5, Node: "n02", AppUnhealthy: true})
	fail(t, c, 10, "n01")
	from := 0
	for _, a := range Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 11), Limits: DefaultLimits()}) {
		if a.Kind == ActionStartMigration {
			if a.Source != "n02" {
				t.Fatalf("a copy of a partition only n02 holds from %q: %+v", a.Source, a)
			}
			from++
		}
	}
	if from == 0 {
		t.Fatal("no copy of the partitions only n02 holds")
	}
}
