package raftctl

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

func TestALoadReportRidesOnALeaseRenewalToTheLeader(t *testing.T) {
	leader, nodes := startCluster(t, nil, "r1", "r2", "r3")
	follower := followers(leader, nodes...)[0]
	_, addr := follower.Leader()
	var got LeaseRequest
	leader.SetLeaseGranter(func(req LeaseRequest) (LeaseGrant, error) {
		got = req
		return LeaseGrant{Duration: time.Second}, nil
	})
	copies := map[int]failover.CopyFigures{}
	for p := 0; p < MaxLoadReportCopies; p++ {
		copies[p] = failover.CopyFigures{Size: 1 << 40, Load: 12345.678}
	}
	report := failover.NodeFigures{DiskCapacity: 1 << 41, DiskUsed: 1 << 40, Copies: copies}
	if _, err := follower.RequestLease(ctxTimeout(t, 5*time.Second), addr, LeaseRequest{NodeID: "r2", Load: &report, LoadAge: 3 * time.Second}); err != nil {
		t.Fatalf("a renewal carrying the largest report: %v", err)
	}
	if got.Load == nil || len(got.Load.Copies) != MaxLoadReportCopies || got.Load.DiskUsed != 1<<40 || got.LoadAge != 3*time.Second {
		t.Fatalf("the granter got a report of %d copies, age %v", len(got.Load.Copies), got.LoadAge)
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
