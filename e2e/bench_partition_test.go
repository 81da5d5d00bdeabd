package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// ---- Issue 11: heal after a partition ----

// healTrial is one cut and heal; times from the heal.
type healTrial struct {
	victims string
	// alive: every agent lists the victims alive in a higher incarnation
	// and has them in its raft configuration (rejoinedError).
	alive time.Duration
	// rejoined: alive, and all five agents serve one table and name one
	// leader.
	rejoined time.Duration
	// voters: rejoined, and the raft configuration has five voters again.
	voters time.Duration
}

// BenchmarkHealAfterPartition: per trial a fresh cluster of five agents,
// each on its own address and uid (netfault_test.go), `-profile local`,
// `-partitions 256`, RF 3, no apps, settled. one: the first follower (by
// node ID) is cut off for 15 s; two-with-leader: the leader and the first
// follower are cut off for 20 s. Each
// time the majority fails and removes the victims (checked) before the
// heal. From the heal the agents are polled every 20 ms.
func BenchmarkHealAfterPartition(b *testing.B) {
	for _, sc := range []struct {
		name       string
		cut        time.Duration
		withLeader bool
		victims    int
	}{
		{"one", 15 * time.Second, false, 1},
		{"two-with-leader", 20 * time.Second, true, 2},
	} {
		b.Run(sc.name, func(b *testing.B) {
			trials := max(b.N, minTrials)
			var alive, rejoined, voters []time.Duration
			var tbl strings.Builder
			fmt.Fprintf(&tbl, "| trial | cut off | heal to alive and in raft | heal to rejoined (one table) | heal to 5 voters |\n|---|---|---|---|---|\n")
			for i := 0; i < trials; i++ {
				r := healTrialRun(b, sc.cut, sc.withLeader, sc.victims)
				alive, rejoined, voters = append(alive, r.alive), append(rejoined, r.rejoined), append(voters, r.voters)
				fmt.Fprintf(&tbl, "| %d | %s | %s | %s | %s |\n", i+1, r.victims, secs(r.alive), secs(r.rejoined), secs(r.voters))
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(median(rejoined).Seconds(), "rejoined-median-s")
			b.ReportMetric(slices.Max(rejoined).Seconds(), "rejoined-worst-s")
			b.ReportMetric(median(voters).Seconds(), "voters-median-s")
			b.Logf("\n%d trials, seconds from the heal:\n%s", trials, tbl.String())
		})
	}
}

func healTrialRun(b *testing.B, cut time.Duration, withLeader bool, victims int) healTrial {
	c, nf, nodes, leader := startSettledOnOwnAddresses(b, "local")
	defer c.close()
	var cutOff []*node
	if withLeader {
		cutOff = append(cutOff, leader)
	}
	cutOff = append(cutOff, without(nodes, leader)[:victims-len(cutOff)]...)
	majority := without(nodes, cutOff...)
	before := map[string]uint64{}
	var names []string
	for _, v := range cutOff {
		before[v.ID] = incarnationOf(b, leader, v.ID)
		names = append(names, v.ID)
	}

	cutAt := time.Now()
	nf.Isolate(cutOff...)
	pollUntil(b, 60*time.Second, "victims failed and out of raft on the majority", func() error {
		for _, s := range majority {
			for _, v := range cutOff {
				if st, err := s.MemberStatus(v.ID); err != nil || st != "failed" {
					return fmt.Errorf("%s sees %s as %q (%v)", s.ID, v.ID, st, err)
				}
			}
			servers, err := s.RaftServers()
			if err != nil {
				return err
			}
			for _, srv := range servers {
				if before[srv.NodeID] != 0 {
					return fmt.Errorf("%s's raft configuration still has %s", s.ID, srv.NodeID)
				}
			}
		}
		return nil
	})
	time.Sleep(time.Until(cutAt.Add(cut))) // the length of the fault
	nf.Heal()
	healed := time.Now()

	r := healTrial{victims: strings.Join(names, "+"), alive: -1, rejoined: -1}
	r.voters = pollUntil(b, 90*time.Second, "victims rejoined and five voters", func() error {
		if r.alive < 0 {
			if err := rejoinedError(nodes, before); err != nil {
				return err
			}
			r.alive = time.Since(healed)
		}
		if r.rejoined < 0 {
			if _, err := localcluster.SameTableAndLeader(agents(nodes)); err != nil {
				return err
			}
			r.rejoined = time.Since(healed)
		}
		servers, err := nodes[0].RaftServers()
		if err != nil {
			return err
		}
		n := 0
		for _, s := range servers {
			if s.Voter {
				n++
			}
		}
		if n != 5 {
			return fmt.Errorf("%d voters", n)
		}
		return nil
	})
	if err := exitedEarly(nodes); err != nil {
		b.Fatalf("an agent exited: %v", err)
	}
	return r
}

// ---- Issue 11: gray failures ----

// BenchmarkGrayFailures: per trial a fresh cluster of five agents on their
// own addresses (`-profile local`, `-partitions 256`, no apps), settled;
// then, one after the other, for 30 s each and healed in between (the
// cluster whole again: one table, five voters): lossy, one follower loses
// 80 % of its packets both ways; one-way, another follower loses every
// packet sent to it but still sends. The healthy agents' /v1/members are
// polled every 100 ms, for Steward's cluster status and memberlist's own
// gossip_state side by side (memberlist alone, in the same run).
func BenchmarkGrayFailures(b *testing.B) {
	trials := max(b.N, minTrials)
	type row struct {
		name string
		out  grayOutcome
	}
	var rows []row
	for i := 0; i < trials; i++ {
		c, nf, nodes, leader := startSettledOnOwnAddresses(b, "local")
		followers := without(nodes, leader)
		rows = append(rows,
			row{"lossy (80 % both ways)", grayFault(b, nf, nodes, followers[0], 80, lossBoth, 30*time.Second)},
			row{"one-way (all incoming lost)", grayFault(b, nf, nodes, followers[1], 100, lossIncoming, 30*time.Second)})
		c.close()
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| trial | fault | Steward: healthy failed | Steward: faulty failed (times) | Steward: changes healthy / faulty | memberlist: healthy dead | memberlist: faulty dead (times) | memberlist: changes healthy / faulty |\n|---|---|---|---|---|---|---|---|\n")
	wrongSteward, wrongMemberlist, flapsSteward, flapsMemberlist := 0, 0, 0, 0
	for i, r := range rows {
		s, m := r.out.steward, r.out.memberlist
		fmt.Fprintf(&tbl, "| %d | %s | %v | %d | %d / %d | %v | %d | %d / %d |\n", i/2+1, r.name,
			s.healthyDown, s.faultyDowns, s.healthyChanges, s.faultyChanges,
			m.healthyDown, m.faultyDowns, m.healthyChanges, m.faultyChanges)
		wrongSteward += len(s.healthyDown)
		wrongMemberlist += len(m.healthyDown)
		if s.faultyDowns > 1 {
			flapsSteward++
		}
		if m.faultyDowns > 1 {
			flapsMemberlist++
		}
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(wrongSteward), "steward-healthy-failed")
	b.ReportMetric(float64(wrongMemberlist), "memberlist-healthy-dead")
	b.Logf("\n%d trials of both faults, 30 s each:\n%s\nfaults after which the faulty node went down more than once: Steward %d, memberlist %d of %d",
		trials, tbl.String(), flapsSteward, flapsMemberlist, len(rows))
}

// BenchmarkGrayFailuresLAN is issue 17's stress of `-profile lan` with
// one node at 80 % packet loss both ways: per trial a fresh cluster of
// five agents on their own addresses, settled; one follower loses 80 % of
// its packets for 30 s, then heals. It reports the healthy members any
// healthy agent saw failed (wrong removals: there must be none), how often
// the faulty member went down on one observer (more than once is a flap),
// and how long after the fault began each healthy agent first saw it
// failed, next to memberlist's own dead on the same agents (gossip_state).
func BenchmarkGrayFailuresLAN(b *testing.B) {
	trials := max(b.N, 3)
	var wrong, flaps int
	var steward, memberlist []time.Duration
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| trial | healthy failed | faulty failed (times) | Steward: faulty failed after, median / worst | memberlist: healthy dead | memberlist: faulty dead after, median / worst |\n|---|---|---|---|---|---|\n")
	for i := 0; i < trials; i++ {
		c, nf, nodes, leader := startSettledOnOwnAddresses(b, "lan")
		out := grayFault(b, nf, nodes, without(nodes, leader)[0], 80, lossBoth, 30*time.Second)
		c.close()
		wrong += len(out.steward.healthyDown)
		if out.steward.faultyDowns > 1 {
			flaps++
		}
		steward, memberlist = append(steward, out.stewardDetected...), append(memberlist, out.memberlistDetected...)
		fmt.Fprintf(&tbl, "| %d | %v | %d | %s | %v | %s |\n", i+1, out.steward.healthyDown, out.steward.faultyDowns,
			medianWorst(out.stewardDetected), out.memberlist.healthyDown, medianWorst(out.memberlistDetected))
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(wrong), "steward-healthy-failed")
	b.ReportMetric(float64(flaps), "steward-flaps")
	if len(steward) > 0 {
		b.ReportMetric(median(steward).Seconds(), "steward-detected-median-s")
	}
	b.Logf("\n%d trials, one follower at 80 %% loss both ways for 30 s, -profile lan; seconds from the fault's start:\n%s\nall trials: Steward's faulty failed after median %s (%d observations), memberlist's dead after median %s (%d)",
		trials, tbl.String(), medianWorst(steward), len(steward), medianWorst(memberlist), len(memberlist))
}

// medianWorst formats durations as "median / worst" seconds, or "never".
func medianWorst(ds []time.Duration) string {
	if len(ds) == 0 {
		return "never"
	}
	return secs(median(ds)) + " / " + secs(slices.Max(ds))
}

// startSettledOnOwnAddresses starts five agents (the given profile, 256
// partitions), each on its own address and uid so that nf can cut them
// apart, and waits until they are settled with one leader.
func startSettledOnOwnAddresses(b *testing.B, profile string) (*cluster, *netFaults, []*node, *node) {
	c := newBenchCluster(b)
	nf := newNetFaults(b, c)
	nodes := c.startAll(5, profile, "-partitions", "256")
	var leader *node
	pollUntil(b, 90*time.Second, "five agents settled", func() error {
		if err := exitedEarly(nodes); err != nil {
			return localcluster.Stop{Err: err}
		}
		var err error
		leader, err = settled(nodes, 5)
		return err
	})
	return c, nf, nodes, leader
}
