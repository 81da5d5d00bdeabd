package failover

import (
	"reflect"
	"testing"
)

func TestUnderReplicatedFollowsAFailureUntilTheCopiesAreRecreated(t *testing.T) {
	c := bootstrap(t, 16, 3, nodes(4))
	if got := c.UnderReplicated(); len(got) != 0 {
		t.Fatalf("a fresh cluster of 4 with RF 3 reports %v under-replicated", got)
	}

	fail(t, c, 2, "n01")
	var want []int
	for _, p := range c.Partitions {
		if p.Holds("n01") {
			want = append(want, p.ID)
		}
	}
	if len(want) == 0 {
		t.Fatal("n01 held no partition: the scenario tests nothing")
	}
	if got := c.UnderReplicated(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after n01 failed: under-replicated %v, want the partitions it held %v", got, want)
	}

	converge(t, c, int64(1)<<62)
	if got := c.UnderReplicated(); len(got) != 0 {
		t.Fatalf("after the copies were re-created on the 3 others: %v still under-replicated", got)
	}
}

func TestUnderReplicatedCountsEveryPartitionWhenTooFewMembersAreLive(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(3))
	fail(t, c, 2, "n03")
	converge(t, c, int64(1)<<62)
	if got := c.UnderReplicated(); len(got) != 8 {
		t.Fatalf("2 live members, RF 3: %d of 8 partitions under-replicated, want all", len(got))
	}
}

func TestALeavingHolderStillCountsAsALiveCopy(t *testing.T) {
	c := bootstrap(t, 8, 3, nodes(4))
	setStatus(t, c, 2, "n02", StatusLeaving, nil)
	if got := c.UnderReplicated(); len(got) != 0 {
		t.Fatalf("a leaving member serves until its copies moved; got %v under-replicated", got)
	}
}

func TestUnderReplicatedIsEmptyBeforeBootstrap(t *testing.T) {
	if got := NewCluster().UnderReplicated(); got != nil {
		t.Fatalf("not bootstrapped: got %v", got)
	}
}
