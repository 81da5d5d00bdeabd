package hooks

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestDesiredListsWhatANodeHoldsOrCopies(t *testing.T) {
	c := failover.NewCluster()
	c.Bootstrapped = true
	c.Members = map[string]failover.Member{
		"a": {ID: "a", AppAddr: "127.0.0.1:7001", Status: failover.StatusAlive},
		"b": {ID: "b", AppAddr: "127.0.0.1:7002", Status: failover.StatusAlive},
		"c": {ID: "c", AppAddr: "127.0.0.1:7003", Status: failover.StatusAlive},
	}
	c.Partitions = []failover.Partition{
		{ID: 0, Epoch: 3, Primary: "a", Replicas: []string{"b"}},
		{ID: 1, Epoch: 5, Primary: "b", Replicas: []string{"a"}},
		{ID: 2, Epoch: 8, Primary: "b", Replicas: []string{}, Migrations: []failover.Migration{{ID: "m4", Target: "a", Source: "b"}}},
		{ID: 3, Epoch: 2, Primary: "c", Replicas: []string{"b"}, Resource: "orders"},
		// Every copy gone: a new empty one on c, with nothing to copy from.
		{ID: 4, Epoch: 6, Replicas: []string{}, Migrations: []failover.Migration{{ID: "m7", Target: "c"}}},
	}
	cases := map[string]map[int]Assignment{
		"a": {
			0: {Partition: 0, Resource: "default", Epoch: 3, Role: RolePrimary},
			1: {Partition: 1, Resource: "default", Epoch: 5, Role: RoleReplica},
			2: {Partition: 2, Resource: "default", Epoch: 8, Role: RoleReplica, Source: &Source{NodeID: "b", AppAddr: "127.0.0.1:7002"}, MigrationID: "m4"},
		},
		"b": {
			0: {Partition: 0, Resource: "default", Epoch: 3, Role: RoleReplica},
			1: {Partition: 1, Resource: "default", Epoch: 5, Role: RolePrimary},
			2: {Partition: 2, Resource: "default", Epoch: 8, Role: RolePrimary},
			3: {Partition: 3, Resource: "orders", Epoch: 2, Role: RoleReplica},
		},
		"c": {
			3: {Partition: 3, Resource: "orders", Epoch: 2, Role: RolePrimary},
			4: {Partition: 4, Resource: "default", Epoch: 6, Role: RoleReplica, MigrationID: "m7"},
		},
		"unknown": {},
	}
	for node, want := range cases {
		t.Run(node, func(t *testing.T) {
			if got := Desired(c, node); !reflect.DeepEqual(got, want) {
				t.Fatalf("Desired(%s) = %+v, want %+v", node, got, want)
			}
		})
	}
	if got := Desired(nil, "a"); len(got) != 0 {
		t.Fatalf("Desired(nil) = %v", got)
	}
}

func TestTransitionPicksTheEventThatMovesTheApp(t *testing.T) {
	copyFrom := &Source{NodeID: "b", AppAddr: "x:1"}
	cases := []struct {
		name      string
		want      *Assignment
		have      *Acked
		redeliver bool
		wantType  string
	}{
		{"nothing either side", nil, nil, false, ""},
		{"new partition", &Assignment{Epoch: 1, Role: RoleReplica}, nil, false, TypeAssign},
		{"new copy", &Assignment{Epoch: 1, Role: RoleReplica, Source: copyFrom, MigrationID: "m"}, nil, false, TypeAssign},
		{"in agreement", &Assignment{Epoch: 4, Role: RolePrimary}, &Acked{Epoch: 4, Role: RolePrimary}, false, ""},
		{"replica becomes primary", &Assignment{Epoch: 5, Role: RolePrimary}, &Acked{Epoch: 4, Role: RoleReplica}, false, TypePromote},
		{"primary becomes replica", &Assignment{Epoch: 5, Role: RoleReplica}, &Acked{Epoch: 4, Role: RolePrimary}, false, TypeDemote},
		{"same role, new epoch", &Assignment{Epoch: 5, Role: RoleReplica}, &Acked{Epoch: 4, Role: RoleReplica}, false, TypeAssign},
		{"copy done, now a replica", &Assignment{Epoch: 6, Role: RoleReplica}, &Acked{Epoch: 5, Role: RoleReplica, MigrationID: "m"}, false, TypeAssign},
		{"no longer held", nil, &Acked{Epoch: 4, Role: RoleReplica}, false, TypeRelease},
		{"desired older than acked", &Assignment{Epoch: 3, Role: RolePrimary}, &Acked{Epoch: 4, Role: RoleReplica}, false, ""},
		{"copy waiting", &Assignment{Epoch: 5, Role: RoleReplica, Source: copyFrom, MigrationID: "m"}, &Acked{Epoch: 5, Role: RoleReplica, MigrationID: "m", Copying: true}, false, ""},
		{"copy announced again after restart", &Assignment{Epoch: 5, Role: RoleReplica, Source: copyFrom, MigrationID: "m"}, &Acked{Epoch: 5, Role: RoleReplica, MigrationID: "m", Copying: true}, true, TypeAssign},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var want Assignment
			var have Acked
			if c.want != nil {
				want = *c.want
			}
			if c.have != nil {
				have = *c.have
			}
			got, ok := transition(want, c.want != nil, have, c.have != nil, c.redeliver)
			if got != c.wantType || ok != (c.wantType != "") {
				t.Fatalf("transition = %q, %v; want %q", got, ok, c.wantType)
			}
		})
	}
}

func TestBackoffDoublesUpToTheCapWithFullJitter(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	base, maxDelay := 100*time.Millisecond, time.Second
	for attempt, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 40: time.Second} {
		var largest time.Duration
		for range 2000 {
			d := backoff(attempt, base, maxDelay, rnd)
			if d < 0 || d >= ceiling {
				t.Fatalf("attempt %d: delay %s outside [0, %s)", attempt, d, ceiling)
			}
			largest = max(largest, d)
		}
		// Full jitter spreads over the whole range, not just near zero.
		if largest < ceiling*9/10 {
			t.Fatalf("attempt %d: largest of 2000 delays %s, want close to %s", attempt, largest, ceiling)
		}
	}
}

func TestAckStorePersistsAtomicallyWithPrivateMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hooks-acked.json")
	s, err := OpenAckStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Snapshot()) != 0 {
		t.Fatal("a missing file should be an empty store")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Set(3, Acked{Role: RolePrimary, Epoch: 7}))
	must(s.Set(9, Acked{Role: RoleReplica, Epoch: 2, MigrationID: "m1", Copying: true}))
	must(s.Set(4, Acked{Role: RoleReplica, Epoch: 1}))
	must(s.Delete(4))

	info, err := os.Stat(path)
	must(err)
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", info.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	must(err)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	reopened, err := OpenAckStore(path)
	must(err)
	want := map[int]Acked{3: {Role: RolePrimary, Epoch: 7}, 9: {Role: RoleReplica, Epoch: 2, MigrationID: "m1", Copying: true}}
	if got := reopened.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reopened %+v, want %+v", got, want)
	}
}

func TestAckStoreWriteFailureChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenAckStore(filepath.Join(dir, "sub", "acked.json")) // directory missing
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set(1, Acked{Role: RolePrimary, Epoch: 1}); err == nil {
		t.Fatal("Set succeeded without a directory")
	}
	if _, ok := s.Get(1); ok {
		t.Fatal("a failed write changed the store")
	}
}
