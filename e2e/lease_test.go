package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// leaseInterval is a stretch of time, on the test's monotonic clock, during
// which an app polling its agent as hooks.LeaseKeeper does could serve a
// partition as primary: from the moment the answer arrived to the moment
// the poll was sent plus the remaining time the answer gave.
type leaseInterval struct {
	node     string
	from, to time.Time
}

// leaseWatch polls every agent's GET /v1/lease, as each app does, and
// records per partition the intervals each node could serve it.
type leaseWatch struct {
	mu          sync.Mutex
	byPartition map[int][]leaseInterval
	// valid are the intervals each node's lease was valid, primaries or
	// not.
	valid  map[string][]leaseInterval
	polls  map[string]int
	stopCh chan struct{}
	wg     sync.WaitGroup
}

func watchLeases(nodes []*node) *leaseWatch {
	w := &leaseWatch{byPartition: map[int][]leaseInterval{}, valid: map[string][]leaseInterval{}, polls: map[string]int{}, stopCh: make(chan struct{})}
	for _, n := range nodes {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-w.stopCh:
					return
				case <-tick.C:
				}
				w.pollOnce(n)
			}
		}()
	}
	return w
}

func (w *leaseWatch) pollOnce(n *node) {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	l, err := n.Lease(ctx)
	if err != nil {
		return
	}
	got := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls[n.ID]++
	if !l.Valid {
		return
	}
	until := sent.Add(time.Duration(l.RemainingMS) * time.Millisecond)
	w.valid[n.ID] = append(w.valid[n.ID], leaseInterval{node: n.ID, from: got, to: until})
	for ps := range l.Primaries {
		p, _ := strconv.Atoi(ps)
		w.byPartition[p] = append(w.byPartition[p], leaseInterval{node: n.ID, from: got, to: until})
	}
}

func (w *leaseWatch) stop() {
	close(w.stopCh)
	w.wg.Wait()
}

// longestGap is the longest stretch within [from, to] during which node's
// lease was not seen valid (to - from if it never was).
func (w *leaseWatch) longestGap(node string, from, to time.Time) time.Duration {
	w.mu.Lock()
	merged := mergeIntervals(append([]leaseInterval(nil), w.valid[node]...))
	w.mu.Unlock()
	sort.Slice(merged, func(i, j int) bool { return merged[i].from.Before(merged[j].from) })
	var longest time.Duration
	at := from // covered up to here
	for _, iv := range merged {
		if !iv.to.After(at) {
			continue
		}
		if iv.from.After(at) {
			longest = max(longest, minTime(iv.from, to).Sub(at))
		}
		at = iv.to
		if !at.Before(to) {
			return longest
		}
	}
	return max(longest, to.Sub(at))
}

// holders returns, per partition, the node whose lease on it was seen last.
func (w *leaseWatch) holders() map[int]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[int]string{}
	for p, ivs := range w.byPartition {
		last := ivs[0]
		for _, iv := range ivs {
			if iv.from.After(last.from) {
				last = iv
			}
		}
		out[p] = last.node
	}
	return out
}

// overlaps lists every pair of different nodes whose leases on one
// partition overlapped: two apps that could both have served it as primary
// at the same instant.
func (w *leaseWatch) overlaps() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for p, ivs := range w.byPartition {
		merged := mergeIntervals(ivs)
		for i := range merged {
			for j := i + 1; j < len(merged); j++ {
				a, b := merged[i], merged[j]
				if a.node != b.node && a.from.Before(b.to) && b.from.Before(a.to) {
					out = append(out, fmt.Sprintf("partition %d: %s and %s overlap by %v", p, a.node, b.node,
						minTime(a.to, b.to).Sub(maxTime(a.from, b.from))))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// mergeIntervals joins each node's overlapping or touching intervals.
func mergeIntervals(ivs []leaseInterval) []leaseInterval {
	byNode := map[string][]leaseInterval{}
	for _, iv := range ivs {
		byNode[iv.node] = append(byNode[iv.node], iv)
	}
	var out []leaseInterval
	for _, list := range byNode {
		sort.Slice(list, func(i, j int) bool { return list[i].from.Before(list[j].from) })
		cur := list[0]
		for _, iv := range list[1:] {
			if !iv.from.After(cur.to) {
				cur.to = maxTime(cur.to, iv.to)
				continue
			}
			out = append(out, cur)
			cur = iv
		}
		out = append(out, cur)
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// primaryHolder returns a node other than skip that the table names
// primary of at least one partition.
func primaryHolder(t testing.TB, nodes []*node, skip *node) *node {
	t.Helper()
	pt, err := nodes[0].Partitions()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range pt.Partitions {
		count[p.Primary]++
	}
	for _, n := range nodes {
		if n != skip && count[n.ID] > 0 {
			return n
		}
	}
	t.Fatal("no node other than the leader holds a primary")
	return nil
}

// waitStaleReported waits until the cut-off agent n says its view may be
// stale instead of presenting it as current: not ready, and its partition
// table refused.
func waitStaleReported(t *testing.T, n *node, within time.Duration) {
	t.Helper()
	eventually(t, within, n.ID+" not ready", func() error {
		st, err := n.Status()
		if err != nil {
			return err
		}
		if st.Ready {
			return fmt.Errorf("%s still ready", n.ID)
		}
		if _, err := n.Partitions(); err == nil {
			return fmt.Errorf("%s still serves its partition table as current", n.ID)
		}
		return nil
	})
}

// firstLeaseAfter is when a node other than not was first seen able to
// serve partition p after since (zero: not yet).
func (w *leaseWatch) firstLeaseAfter(p int, since time.Time, not string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, iv := range w.byPartition[p] {
		if iv.node != not && iv.from.After(since) && (first.IsZero() || iv.from.Before(first)) {
			first = iv.from
		}
	}
	return first
}

// lastLeaseEnd is when the last lease seen on node ran out.
func (w *leaseWatch) lastLeaseEnd(node string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var last time.Time
	for _, ivs := range w.byPartition {
		for _, iv := range ivs {
			if iv.node == node && iv.to.After(last) {
				last = iv.to
			}
		}
	}
	return last
}

// everyPartitionLeased says which partition has not been seen leased yet.
func everyPartitionLeased(w *leaseWatch, partitions int) error {
	h := w.holders()
	for p := 0; p < partitions; p++ {
		if _, ok := h[p]; !ok {
			return fmt.Errorf("partition %d never leased", p)
		}
	}
	return nil
}

// waitEveryPartitionLeased waits until every partition has been seen
// leased to some node since the watch began (the cluster serves again).
func waitEveryPartitionLeased(t *testing.T, w *leaseWatch, partitions int, gone ...*node) {
	t.Helper()
	eventually(t, 30*time.Second, "every partition leased to a live node", func() error {
		h := w.holders()
		for p := 0; p < partitions; p++ {
			node, ok := h[p]
			if !ok {
				return fmt.Errorf("partition %d never leased", p)
			}
			for _, g := range gone {
				if node == g.ID {
					return fmt.Errorf("partition %d last leased to %s", p, node)
				}
			}
		}
		return nil
	})
}

func TestAPausedPrimaryAndAPausedLeaderNeverShareALease(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	w := watchLeases(nodes)
	defer w.stop()
	waitEveryPartitionLeased(t, w, 32)

	// A follower's agent that holds primaries stops for 5 s: the cluster
	// fails it over, and its successors are leased its partitions only
	// once its own lease has run out.
	victim := primaryHolder(t, nodes, leader)
	victim.Signal(syscall.SIGSTOP)
	survivors := without(nodes, victim)
	waitFailedAndRemoved(t, survivors, victim)
	waitEveryPartitionLeased(t, w, 32, victim)
	victim.Signal(syscall.SIGCONT)

	// The leader's agent stops for 5 s: a new leader grants nothing until
	// the old leader's grants have run out.
	leader.Signal(syscall.SIGSTOP)
	eventually(t, 30*time.Second, "a new leader among the others", func() error {
		for _, n := range without(nodes, leader) {
			st, err := n.Status()
			if err == nil && st.RaftState == "leader" {
				return nil
			}
		}
		return fmt.Errorf("no new leader yet")
	})
	waitEveryPartitionLeased(t, w, 32, leader)
	leader.Signal(syscall.SIGCONT)

	if o := w.overlaps(); len(o) > 0 {
		t.Fatalf("two nodes could serve one partition as primary at once:\n%v", o)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range nodes {
		if w.polls[n.ID] == 0 {
			t.Errorf("no lease poll of %s succeeded: the watch saw nothing", n.ID)
		}
	}
}

func TestACutOffPrimaryStopsServingBeforeItsPartitionsAreLeasedElsewhere(t *testing.T) {
	c := newCluster(t)
	nf := newNetFaults(t, c)
	nodes := formCluster(t, c, 5, "-partitions", "32")
	waitVoters(t, nodes, 5)
	leader := leaderOf(t, nodes)
	w := watchLeases(nodes)
	defer w.stop()
	waitEveryPartitionLeased(t, w, 32)

	victim := primaryHolder(t, nodes, leader)
	nf.Isolate(victim)
	waitStaleReported(t, victim, 10*time.Second)
	waitFailedAndRemoved(t, without(nodes, victim), victim)
	waitEveryPartitionLeased(t, w, 32, victim)
	nf.Heal()

	if o := w.overlaps(); len(o) > 0 {
		t.Fatalf("two nodes could serve one partition as primary at once:\n%v", o)
	}
}
