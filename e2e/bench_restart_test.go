package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// BenchmarkRollingRestartPlanned: the two ways to restart every node of a
// loaded cluster, in one run on one cluster of 5 agents with their kvapps
// (local profile, 64 partitions, RF 3, keysPerPartition keys each), under
// writes from 4 clients:
//
//  1. planned: `POST /v1/rolling-restart` (each agent exits 0 and the
//     harness starts it again, as systemd Restart=always would); timed from
//     the request to the run done and the table settled and balanced;
//  2. leave and rejoin (BenchmarkRollingRestart's procedure, the agent
//     only): SIGTERM, the agent leaves, it is started again and rejoins;
//     timed from the first SIGTERM to the fifth node's balanced table.
//
// For each: the copies the apps were told to make (assigns with a source),
// the keys they copied and the bytes of those keys and values (from the
// apps' "copy complete" log lines, each partition's keys at the time), the
// partitions the kvapps pulled again whole from a holder to re-sync after
// node.rejoin (their "rejoined" lines: the example app has no incremental
// catch-up; Steward orders no copy for them), the time, and the writes
// acknowledged. Every acknowledged write, and a
// sample of the loaded keys, is read back through every app at the end.
func BenchmarkRollingRestartPlanned(b *testing.B) {
	for _, keys := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("partitions=64/keys=%d", keys), func(b *testing.B) {
			if keys == 10000 && os.Getenv("STEWARD_BENCH_FULL") != "1" {
				b.Skip("640,000 keys take minutes to load; set STEWARD_BENCH_FULL=1")
			}
			benchRollingRestartPlanned(b, 64, keys)
		})
	}
}

// rollingOutcome is what one way of restarting every node cost.
type rollingOutcome struct {
	took         time.Duration
	copies       int
	keysCopied   int
	bytesCopied  int64
	resynced     int
	acked, tried int
}

func benchRollingRestartPlanned(b *testing.B, partitions, keysPerPartition int) {
	c := newBenchCluster(b)
	defer c.close()
	apps, leader := startAppCluster(b, c, 5, 3, "-partitions", strconv.Itoa(partitions), "-restart-grace", "2m")
	defer func() {
		for _, a := range apps {
			a.app.Kill()
		}
	}()
	waitQuiet(b, apps) // the moves right after the formation are over: loading needs stable primaries
	keys := loadKeys(b, apps, leader, partitions, keysPerPartition)
	entryBytes := int64(0)
	for _, k := range keys {
		entryBytes += int64(len(k) + len("v-"+k))
	}
	meanEntry := float64(entryBytes) / float64(len(keys))
	superviseAll(b, apps)
	waitQuiet(b, apps)

	planned := measureRolling(b, apps, meanEntry, "planned", func() {
		var r localcluster.RollingRestart
		if err := apps[0].PostJSON("/v1/rolling-restart", "", struct{}{}, &r); err != nil {
			b.Fatal(err)
		}
		pollUntil(b, 10*time.Minute, "the planned rolling restart done", func() error {
			for _, a := range apps {
				var now localcluster.RollingRestart
				if err := a.GetJSON("/v1/rolling-restart", &now); err != nil {
					continue // this one may be restarting
				}
				switch now.State {
				case "failed":
					return localcluster.Stop{Err: errors.New("rolling restart failed: " + now.Error)}
				case "done":
					return nil
				}
				return errors.New(now.Summary)
			}
			return errors.New("no agent answers")
		})
	})
	for _, a := range apps {
		a.Unsupervise()
	}
	leaveRejoin := measureRolling(b, apps, meanEntry, "leave-rejoin", func() {
		for _, a := range apps {
			if err := a.Stop(2 * time.Minute); err != nil {
				b.Fatalf("SIGTERM %s: %v", a.ID, err)
			}
			startBench(a.node, "local", "-join", appWithout(apps, a)[0].GossipAddr())
			waitBalanced(b, apps)
		}
	})
	readBack(b, apps, keys, 2000)

	for _, o := range []struct {
		name string
		r    rollingOutcome
	}{{"planned restarts", planned}, {"leave and rejoin", leaveRejoin}} {
		b.Logf("%s: %s s for 5 nodes; %d copies, %d keys and %.1f MB copied; %d partitions re-synced whole by the apps after node.rejoin; %d of %d writes acknowledged meanwhile",
			o.name, secs(o.r.took), o.r.copies, o.r.keysCopied, float64(o.r.bytesCopied)/1e6, o.r.resynced, o.r.acked, o.r.tried)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(planned.took.Seconds(), "planned-s")
	b.ReportMetric(float64(planned.copies), "planned-copies")
	b.ReportMetric(leaveRejoin.took.Seconds(), "leave-rejoin-s")
	b.ReportMetric(float64(leaveRejoin.copies), "leave-rejoin-copies")
}

// measureRolling runs restartAll under writes and measures it (see
// rollingOutcome); the table is settled and balanced when it returns.
func measureRolling(b *testing.B, apps []*appNode, meanEntry float64, prefix string, restartAll func()) rollingOutcome {
	b.Helper()
	copiesBefore, keysBefore, resyncedBefore := copyOrders(apps), keysCopied(apps), resyncedPartitions(apps)
	writes := writeDuring(apps, prefix)
	start := time.Now()
	restartAll()
	waitBalanced(b, apps)
	var o rollingOutcome
	o.took = time.Since(start)
	acked, tried := writes.stop()
	o.acked, o.tried = len(acked), tried
	o.copies = copyOrders(apps) - copiesBefore
	o.keysCopied = keysCopied(apps) - keysBefore
	o.bytesCopied = int64(float64(o.keysCopied) * meanEntry)
	o.resynced = resyncedPartitions(apps) - resyncedBefore
	client := &http.Client{Timeout: 15 * time.Second}
	for _, a := range apps {
		for k, v := range acked {
			if got, code, err := getKey(client, a.app.Addr(), k); err != nil || code != http.StatusOK || got != v {
				b.Fatalf("%s: through %s, acknowledged key %s: %q %d %v", prefix, a.ID, k, got, code, err)
			}
		}
	}
	return o
}

// waitBalanced waits until the table is settled and balanced over apps.
func waitBalanced(b *testing.B, apps []*appNode) {
	b.Helper()
	pollUntil(b, 10*time.Minute, "settled and balanced", func() error {
		if err := tableSettled(apps, 3); err != nil {
			return err
		}
		pt, err := apps[0].Partitions()
		if err != nil {
			return err
		}
		return balanced(pt, ids(plainNodes(apps)))
	})
}

var rejoinResynced = regexp.MustCompile(`msg=rejoined .*resynced="?\[([0-9 ]*)\]`)

// resyncedPartitions counts the partitions the apps re-synced after a
// node.rejoin (their log since they started).
func resyncedPartitions(apps []*appNode) int {
	total := 0
	for _, a := range apps {
		for _, line := range strings.Split(a.app.Log(), "\n") {
			if m := rejoinResynced.FindStringSubmatch(line); m != nil {
				total += len(strings.Fields(m[1]))
			}
		}
	}
	return total
}

var copyCompleteKeys = regexp.MustCompile(`msg="copy complete" .*keys=(\d+)`)

// keysCopied sums the keys of the copies the apps completed (their log
// since they started).
func keysCopied(apps []*appNode) int {
	total := 0
	for _, a := range apps {
		for _, line := range strings.Split(a.app.Log(), "\n") {
			if m := copyCompleteKeys.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				total += n
			}
		}
	}
	return total
}
