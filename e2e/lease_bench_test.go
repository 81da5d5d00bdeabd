package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// BenchmarkLeaseHandover measures, in one run, what a primary lease costs
// a failover: SIGKILL of an agent holding primaries (local profile, five
// agents, 32 partitions), then, from the kill, when its last lease ran out
// (as its app saw it), when the cluster declared it failed (the detection
// time), and when its partitions were leased to their new primaries (the
// first one and the last). Leases shorter than detection add nothing to a
// failover: the handover follows the failed verdict, not the lease.
//
//	go test -run '^$' -bench BenchmarkLeaseHandover -benchtime 5x ./e2e/
func BenchmarkLeaseHandover(b *testing.B) {
	trials := max(b.N, minTrials)
	var leaseEnd, failed, first, last []time.Duration
	for i := 0; i < trials; i++ {
		l, f, s, e := leaseHandoverTrial(b)
		leaseEnd, failed, first, last = append(leaseEnd, l), append(failed, f), append(first, s), append(last, e)
	}
	b.ReportMetric(median(leaseEnd).Seconds(), "lease-end-s")
	b.ReportMetric(median(failed).Seconds(), "failed-s")
	b.ReportMetric(median(first).Seconds(), "first-handover-s")
	b.ReportMetric(median(last).Seconds(), "all-handed-over-s")
	b.Logf("from SIGKILL, %d trials: victim's lease ran out %s; failed on the leader %s; first partition leased elsewhere %s; all %s",
		trials, formatDurations(leaseEnd), formatDurations(failed), formatDurations(first), formatDurations(last))
}

func leaseHandoverTrial(b *testing.B) (leaseEnd, failed, first, last time.Duration) {
	c, nodes, leader := startSettled(b, 5, "local", "-partitions", "32")
	defer c.close()
	w := watchLeases(nodes)
	defer w.stop()
	if _, err := localcluster.Poll(context.Background(), benchPoll, 30*time.Second, func() error { return everyPartitionLeased(w, 32) }); err != nil {
		b.Fatal(err)
	}
	victim := primaryHolder(b, nodes, leader)
	var theirs []int
	pt, err := leader.Partitions()
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range pt.Partitions {
		if p.Primary == victim.ID {
			theirs = append(theirs, p.ID)
		}
	}
	killedAt := time.Now()
	victim.Kill()
	failed, err = localcluster.Poll(context.Background(), benchPoll, 30*time.Second, func() error {
		st, err := leader.MemberStatus(victim.ID)
		if err != nil || st != "failed" {
			return fmt.Errorf("%s is %q on the leader (%v)", victim.ID, st, err)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := localcluster.Poll(context.Background(), benchPoll, 30*time.Second, func() error {
		for _, p := range theirs {
			if w.firstLeaseAfter(p, killedAt, victim.ID).IsZero() {
				return fmt.Errorf("partition %d not leased elsewhere yet", p)
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	var starts []time.Duration
	for _, p := range theirs {
		starts = append(starts, w.firstLeaseAfter(p, killedAt, victim.ID).Sub(killedAt))
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	if o := w.overlaps(); len(o) > 0 {
		b.Errorf("leases overlapped: %v", o)
	}
	return w.lastLeaseEnd(victim.ID).Sub(killedAt), failed, starts[0], starts[len(starts)-1]
}
