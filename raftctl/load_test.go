package raftctl

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestALoadReportRidesOnALeaseRenewalToTheLeader(t *testing.T) {
	_, nodes := startCluster(t, nil, "r1", "r2", "r3")
	var mu sync.Mutex
	var got LeaseRequest
	for _, n := range nodes {
		n.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
			mu.Lock()
			defer mu.Unlock()
			got = req
			return LeaseGrant{Duration: time.Second}, nil
		})
	}
	copies := map[int]failover.CopyFigures{}
	for p := 0; p < MaxLoadReportCopies; p++ {
		copies[p] = failover.CopyFigures{Size: 1 << 40, Load: 12345.678}
	}
	report := failover.NodeFigures{DiskCapacity: 1 << 41, DiskUsed: 1 << 40, Copies: copies}
	// On a busy machine the leadership may move between the election and
	// the request (CI once saw "not leader"): a follower asks the leader
	// of the moment until one grants. Any other refusal fails the test.
	eventually(t, 20*time.Second, "a renewal carrying the largest report granted", func() bool {
		leader := waitLeader(t, nodes...)
		follower := followers(leader, nodes...)[0]
		_, addr := follower.Leader()
		_, err := follower.RequestLease(ctxTimeout(t, 5*time.Second), addr, LeaseRequest{NodeID: "r2", Load: &report, LoadAge: 3 * time.Second})
		if err != nil && (!errors.Is(err, ErrNoLease) || errors.Is(err, ErrLeaderRefused) || !strings.Contains(err.Error(), "not leader")) {
			t.Fatalf("a renewal carrying the largest report: %v", err)
		}
		return err == nil
	})
	mu.Lock()
	defer mu.Unlock()
	if got.Load == nil {
		t.Fatal("the granter got no load report")
	}
	if len(got.Load.Copies) != MaxLoadReportCopies || got.Load.DiskUsed != 1<<40 || got.LoadAge != 3*time.Second {
		t.Fatalf("the granter got a report of %d copies, %d bytes used, age %v", len(got.Load.Copies), got.Load.DiskUsed, got.LoadAge)
	}
}

func TestAFollowerAsksTheLeaderForItsLoadFigures(t *testing.T) {
	leader, nodes := startCluster(t, nil, "f1", "f2", "f3")
	follower := followers(leader, nodes...)[0]
	_, addr := follower.Leader()
	if _, err := follower.RequestLoad(ctxTimeout(t, 5*time.Second), addr); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "keeps no load figures") {
		t.Fatalf("figures from a leader without a source: %v, want a refusal saying why", err)
	}
	leader.SetLoadSource(func() ([]byte, error) { return []byte(`{"leader":"f1"}`), nil })
	body, err := follower.RequestLoad(ctxTimeout(t, 5*time.Second), addr)
	if err != nil || string(body) != `{"leader":"f1"}` {
		t.Fatalf("figures: %q, %v", body, err)
	}
	// A follower keeps none, source or not.
	follower.SetLoadSource(func() ([]byte, error) { return []byte(`{}`), nil })
	if _, err := leader.RequestLoad(ctxTimeout(t, 5*time.Second), follower.Addr()); !errors.Is(err, ErrRefused) {
		t.Fatalf("figures from a follower: %v, want a refusal", err)
	}
}
