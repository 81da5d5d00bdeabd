package control

import (
	"reflect"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestSizeOfAsksForTheZonesOfTheMissingMembersFirst(t *testing.T) {
	c := failover.NewCluster()
	for _, m := range []failover.Member{
		{ID: "a1", Zone: "a", Status: failover.StatusAlive},
		{ID: "a2", Zone: "a", Status: failover.StatusAlive},
		{ID: "b1", Zone: "b", Status: failover.StatusFailed},
		{ID: "c1", Zone: "c", Status: failover.StatusAlive},
	} {
		c.Members[m.ID] = m
	}
	got := SizeOf(c, 5)
	want := ClusterSize{Desired: 5, Alive: 3, Missing: 2, Zones: map[string]int{"b": 2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SizeOf = %+v, want %+v (b lost a host and has the fewest)", got, want)
	}
	if got := SizeOf(c, 3); got.Missing != 0 || got.Zones != nil {
		t.Fatalf("desired 3 with 3 alive: %+v", got)
	}
}

func TestTheProvisionerIsAskedAfterTheGraceThenLessAndLessOften(t *testing.T) {
	s := ProvisionSchedule{Grace: 10 * time.Second, Backoff: 5 * time.Second, MaxBackoff: 20 * time.Second}
	var asked []time.Duration
	for now := time.Duration(0); now <= 90*time.Second; now += time.Second {
		if ask, _ := s.Observe(true, now); ask {
			asked = append(asked, now)
		}
	}
	want := []time.Duration{10 * time.Second, 15 * time.Second, 25 * time.Second, 45 * time.Second, 65 * time.Second, 85 * time.Second}
	if !reflect.DeepEqual(asked, want) {
		t.Fatalf("asked at %v, want %v", asked, want)
	}
	// The hosts joined: nothing more, and a new shortage waits its grace.
	if ask, _ := s.Observe(false, 91*time.Second); ask {
		t.Fatal("asked while not short")
	}
	if ask, _ := s.Observe(true, 92*time.Second); ask {
		t.Fatal("a new shortage asked before its grace")
	}
	if ask, attempt := s.Observe(true, 102*time.Second); !ask || attempt != 1 {
		t.Fatalf("a new shortage, after its grace: ask %v attempt %d", ask, attempt)
	}
}
