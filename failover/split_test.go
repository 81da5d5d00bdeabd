package failover

import (
	"encoding/json"
	"fmt"
	"testing"
)

func split(t testing.TB, c *Cluster, id int) {
	t.Helper()
	mustApply(t, c, Command{Kind: CmdSplitPartition, At: 10, Split: &SplitRequest{Partition: id, Epoch: c.Partitions[id].Epoch}})
}

func finishSplit(t testing.TB, c *Cluster, id int) {
	t.Helper()
	p := c.Partitions[id]
	mustApply(t, c, Command{Kind: CmdFinishSplit, At: 11, Node: p.SplitBy, Split: &SplitRequest{Partition: id, Epoch: p.Epoch}})
}

func TestASplitHandsEachHalfOfTheKeysToAChildReplicatedLikeAnyPartition(t *testing.T) {
	c := bootstrap(t, 4, 3, nodes(4))
	parent := c.Partitions[2]
	pStart, pEnd := c.KeyRange(&parent)
	rowsBefore := c.WithKeyRanges()

	split(t, c, 2)
	p := c.Partitions[2]
	if !p.Splitting() || p.SplitBy != parent.Primary || p.Epoch != parent.Epoch+1 || len(c.Partitions) != 6 {
		t.Fatalf("after the split command: %+v, %d rows", p, len(c.Partitions))
	}
	children := c.SplitChildren(&p)
	if len(children) != 2 || children[0].KeyStart != pStart || children[0].KeyEnd != children[1].KeyStart || children[1].KeyEnd != pEnd {
		t.Fatalf("children %+v do not halve %d-%d", children, pStart, pEnd)
	}
	// While it splits the parent keeps its keys and copies, the children
	// hold nothing and the planner leaves all three alone.
	for _, a := range Plan(PlanInput{Cluster: c, Ages: AgesAt(c, 12), Seed: 1}) {
		if a.Partition >= 2 {
			t.Fatalf("planned %v during the split", a)
		}
	}
	if got, _ := PartitionForKey(c.WithKeyRanges(), DefaultResource, "k"); got.ID >= 4 {
		t.Fatalf("a key routes to pending child %d", got.ID)
	}

	finishSplit(t, c, 2)
	p = c.Partitions[2]
	if !p.Retired || len(p.Holders()) != 0 {
		t.Fatalf("the parent after the split: %+v", p)
	}
	for _, ch := range children {
		got := c.Partitions[ch.Partition]
		if got.SplitPending || got.Primary != parent.Primary || len(got.Replicas) != 0 || got.Epoch != parent.Epoch+2 || got.Epoch != ch.Epoch {
			t.Fatalf("child %d after the split: %+v", ch.Partition, got)
		}
	}
	// Every key keeps its place, except the parent's, which go to the child
	// owning their half.
	rowsAfter := c.WithKeyRanges()
	for i := 0; i < 3000; i++ {
		key := fmt.Sprintf("key-%d", i)
		before, _ := PartitionForKey(rowsBefore, DefaultResource, key)
		after, ok := PartitionForKey(rowsAfter, DefaultResource, key)
		switch h := KeyHash(key); {
		case !ok:
			t.Fatalf("key %q has no partition after the split", key)
		case before.ID != 2 && after.ID != before.ID:
			t.Fatalf("key %q moved from %d to %d", key, before.ID, after.ID)
		case before.ID == 2 && (after.ID < 4 || h < after.KeyStart || h >= after.KeyEnd):
			t.Fatalf("key %q of the parent went to %+v", key, after)
		}
	}
	converge(t, c, 20)
	for _, ch := range children {
		if n := len(c.Partitions[ch.Partition].Holders()); n != 3 {
			t.Fatalf("child %d has %d copies after converging, want RF 3", ch.Partition, n)
		}
	}
	if n := c.ActivePartitions(); n != 5 {
		t.Fatalf("%d active partitions, want 5", n)
	}
}

func TestAFailedPrimaryCallsTheSplitOff(t *testing.T) {
	c := bootstrap(t, 4, 3, nodes(4))
	split(t, c, 1)
	by := c.Partitions[1].SplitBy
	fail(t, c, 20, by)
	p := c.Partitions[1]
	if p.Splitting() || p.Primary == by || p.Primary == "" {
		t.Fatalf("after the splitting primary failed: %+v", p)
	}
	if !c.Partitions[4].Retired || !c.Partitions[5].Retired {
		t.Fatalf("the pending children were not retired: %+v %+v", c.Partitions[4], c.Partitions[5])
	}
	// The old primary's late acknowledgement changes nothing.
	if _, err := c.Apply(Command{Kind: CmdFinishSplit, Node: by, Split: &SplitRequest{Partition: 1, Epoch: p.Epoch}}); err == nil {
		t.Fatal("a cancelled split finished")
	}
	// And it can be split again, by the new primary.
	split(t, c, 1)
	if c.Partitions[1].SplitBy != p.Primary {
		t.Fatalf("second split by %q, want %q", c.Partitions[1].SplitBy, p.Primary)
	}
}

func TestSplitCommandsRefuseWhatCannotBeSplitAndChangeNothing(t *testing.T) {
	c := bootstrap(t, 8, 1, nodes(2))
	for i := 0; i < MaxSplitsInFlight; i++ {
		split(t, c, i)
	}
	before, _ := json.Marshal(c)
	bad := []Command{
		{Kind: CmdSplitPartition, Split: &SplitRequest{Partition: 6}},                                            // one too many in flight
		{Kind: CmdSplitPartition, Split: &SplitRequest{Partition: 0}},                                            // already splitting
		{Kind: CmdSplitPartition, Split: &SplitRequest{Partition: 99}},                                           // no such partition
		{Kind: CmdSplitPartition, Split: &SplitRequest{Partition: 8}},                                            // a pending child
		{Kind: CmdSplitPartition},                                                                                // no partition
		{Kind: CmdFinishSplit, Node: "n01", Split: &SplitRequest{Partition: 7}},                                  // not splitting
		{Kind: CmdFinishSplit, Node: "nobody", Split: &SplitRequest{Partition: 0, Epoch: c.Partitions[0].Epoch}}, // not its splitter
		{Kind: CmdFinishSplit, Node: c.Partitions[0].SplitBy, Split: &SplitRequest{Partition: 0, Epoch: 1}},      // stale epoch
	}
	for _, cmd := range bad {
		if _, err := c.Apply(cmd); err == nil {
			t.Errorf("%s %+v applied", cmd.Kind, cmd.Split)
		}
	}
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Fatal("refused split commands changed the cluster")
	}
}

func TestAutomaticSplitsUseAJitteredThresholdAndALimitInFlight(t *testing.T) {
	const target = 1000
	for id := 0; id < 500; id++ {
		th := SplitThreshold(id, target)
		if th < 800 || th > 1200 || th != SplitThreshold(id, target) {
			t.Fatalf("threshold of %d: %d, want a fixed value within ±20%% of %d", id, th, target)
		}
	}
	if SplitThreshold(1, target) == SplitThreshold(2, target) && SplitThreshold(2, target) == SplitThreshold(3, target) {
		t.Fatal("the thresholds are not jittered")
	}

	c := bootstrap(t, 8, 1, nodes(2))
	if got := PlanSplits(c, map[int]int64{0: 5000}); got != nil {
		t.Fatalf("a resource without a target size splits: %v", got)
	}
	r := Resource{Name: "big", Partitions: 8, ReplicationFactor: 1, TargetSize: target}
	mustApply(t, c, Command{Kind: CmdCreateResource, Resource: &r, Table: LayoutResource(c, r)})
	sizes := map[int]int64{0: 5000} // the default resource: no target
	for id := 8; id < 16; id++ {
		sizes[id] = 700 // under any threshold
	}
	sizes[9], sizes[12], sizes[13], sizes[14], sizes[15] = 1300, 5000, 4000, 3000, 2000
	got := PlanSplits(c, sizes)
	want := []int{12, 13, 14, 15} // the furthest over first, MaxSplitsInFlight of them
	if len(got) != len(want) {
		t.Fatalf("planned %v, want %v", got, want)
	}
	for i, s := range got {
		if s.Partition != want[i] || s.Epoch != c.Partitions[s.Partition].Epoch {
			t.Fatalf("planned %v, want partitions %v at their epochs", got, want)
		}
	}
	for _, s := range got[:3] {
		split(t, c, s.Partition)
	}
	if got := PlanSplits(c, sizes); len(got) != 1 {
		t.Fatalf("with 3 in flight planned %v, want one more", got)
	}
}
