package e2e

// Steward's failure detection next to Serf and memberlist alone, in the
// same run (issue 17: "docs/benchmarks.md next to memberlist and Serf
// measured in the same run"). The two references are members of the
// program in e2e/reference/serf, a nested module the benchmark builds
// itself, so that Serf is never a dependency of the main module.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// referenceTrials is how many trials of each kind a profile gets: the
// issue's table was measured with 10.
var referenceTrials = flag.Int("reference.trials", 10, "trials per profile and kind in BenchmarkDetectionReference")

// A detection kind is one row of the comparison.
type detectionKind string

const (
	// kindSteward: five agents; the victim is failed on every survivor's
	// /v1/members (detectionTrial, as BenchmarkFailureDetection).
	kindSteward detectionKind = "steward"
	// kindSerf: five Serf v0.10.2 members (serf.DefaultConfig with the
	// profile's memberlist defaults); every survivor printed member-failed.
	kindSerf detectionKind = "serf"
	// kindMemberlist: five members of memberlist alone with its default
	// configuration; every survivor's NotifyLeave said dead.
	kindMemberlist detectionKind = "memberlist"
)

// referenceMode and failureEvent are, for the two references, the
// reference program's -mode and the event that says a member failed.
var (
	referenceMode = map[detectionKind]string{kindSerf: "serf", kindMemberlist: "memberlist"}
	failureEvent  = map[detectionKind]string{kindSerf: "member-failed", kindMemberlist: "member-dead"}
)

// referenceMembers is the size of every cluster, Steward's included.
const referenceMembers = 5

// BenchmarkDetectionReference SIGKILLs one member of a fresh five-member
// cluster per trial and times until every survivor reports it failed, for
// three kinds per profile (local, lan): Steward (as
// BenchmarkFailureDetection, whose memberlist-dead figure it also keeps),
// Serf v0.10.2 and memberlist alone, each reference with memberlist's
// default configuration for the profile (DefaultLocalConfig,
// DefaultLANConfig). Each trial runs the three kinds one after the other,
// in an order that rotates from trial to trial, so that whatever else
// loads the machine falls on all three alike. Run it with -benchtime 1x:
// the trials are -reference.trials, not b.N.
func BenchmarkDetectionReference(b *testing.B) {
	bin := buildReference(b)
	for _, profile := range []string{"local", "lan"} {
		b.Run(profile, func(b *testing.B) {
			load := loadAverage()
			kinds := []detectionKind{kindSteward, kindSerf, kindMemberlist}
			var trials []referenceTrialResult
			for i := 0; i < *referenceTrials; i++ {
				// Rotate who goes first: a kind that always ran right
				// after another's processes were killed would be measured
				// on a machine that is always in the same state.
				order := append(slices.Clone(kinds[i%len(kinds):]), kinds[:i%len(kinds)]...)
				t := referenceTrialResult{order: order, times: map[detectionKind]time.Duration{}, declarers: map[detectionKind]string{}}
				for _, kind := range order {
					if kind == kindSteward {
						d := detectionTrial(b, profile)
						t.times[kindSteward], t.stewardGossipDead = d.failed, d.gossipDead
						continue
					}
					t.times[kind], t.declarers[kind] = referenceTrial(b, bin, kind, profile)
				}
				trials = append(trials, t)
			}
			reportReference(b, profile, trials, load, loadAverage())
		})
	}
}

// referenceTrialResult is one trial of each kind: the time from the
// SIGKILL until every survivor reported the victim failed (-1: not within
// the profile's trial bound).
type referenceTrialResult struct {
	order []detectionKind
	times map[detectionKind]time.Duration
	// stewardGossipDead is Steward's own memberlist (the profile's
	// timings) dead on every survivor, in Steward's trial.
	stewardGossipDead time.Duration
	// declarers says, for each reference, which survivors declared the
	// victim dead themselves and with how many peer confirmations (see
	// suspicionDeclarers).
	declarers map[detectionKind]string
}

// buildReference builds the reference program in its own module's
// directory and returns the binary's path. A build that fails fails the
// benchmark: a comparison without its references is not one.
func buildReference(b *testing.B) string {
	b.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(b.TempDir(), "serf-reference")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(filepath.Dir(file), "reference", "serf")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the reference program in %s: %v\n%s", build.Dir, err, out)
	}
	return bin
}

// referenceTrial forms a fresh cluster of five reference members, SIGKILLs
// a random one but the first (the one the others joined, as Steward's
// victim is never its leader) and returns the time until every survivor
// printed the kind's failure event for it, from the events' own times, and
// who declared it dead (suspicionDeclarers).
func referenceTrial(b *testing.B, bin string, kind detectionKind, profile string) (time.Duration, string) {
	members := startReferenceCluster(b, bin, kind, profile)
	defer func() {
		for _, m := range members {
			m.Kill()
		}
	}()
	victim := members[1+rand.IntN(len(members)-1)]
	survivors := slices.DeleteFunc(slices.Clone(members), func(m *localcluster.ReferenceMember) bool { return m == victim })

	killedAt := time.Now()
	victim.Kill()
	var failedBy time.Duration
	_, err := localcluster.Poll(context.Background(), benchPoll, profileTiming[profile], func() error {
		failedBy = 0
		for _, s := range survivors {
			at, ok := firstEvent(s, failureEvent[kind], victim.Name)
			if !ok {
				return fmt.Errorf("%s has not reported %s %s", s.Name, victim.Name, failureEvent[kind])
			}
			failedBy = max(failedBy, at.Sub(killedAt))
		}
		return nil
	})
	// A failure event for a member that was not killed is a false
	// removal: none is expected on a machine this quiet, but it would make
	// the comparison unfair, so it is reported.
	for _, s := range survivors {
		for _, e := range s.Events() {
			if e.Event == failureEvent[kind] && e.Member != victim.Name {
				b.Errorf("%s %s: %s reported %s %s, which was not killed", kind, profile, s.Name, e.Member, e.Event)
			}
		}
	}
	if err != nil {
		for _, s := range survivors {
			b.Logf("---- %s (last 20 lines) ----\n%s", s.Name, s.Tail(20))
		}
		b.Errorf("%s %s, victim %s: %v", kind, profile, victim.Name, err)
		return -1, suspicionDeclarers(survivors, victim.Name)
	}
	return failedBy, suspicionDeclarers(survivors, victim.Name)
}

// declaredDead is memberlist's log line (v0.6.0, state.go) when its
// suspicion timer for a member runs out: the member is then declared dead
// by this node, and the others learn it by gossip. The timer runs between
// SuspicionMult × ProbeInterval (3 s local, 4 s lan at five members) and
// SuspicionMaxTimeoutMult (6) times that; each peer that confirms the
// suspicion brings it toward the minimum, so the count of confirmations
// explains a slow trial.
var declaredDead = regexp.MustCompile(`memberlist: Marking (\S+) as failed, suspect timeout reached \((\d+) peer confirmations\)`)

// suspicionDeclarers lists the survivors that declared victim dead
// themselves, each with its peer confirmations, e.g. "node2 (1)".
func suspicionDeclarers(survivors []*localcluster.ReferenceMember, victim string) string {
	var declarers []string
	for _, s := range survivors {
		for _, m := range declaredDead.FindAllStringSubmatch(s.Log(), -1) {
			if m[1] == victim {
				declarers = append(declarers, fmt.Sprintf("%s (%s)", s.Name, m[2]))
			}
		}
	}
	if len(declarers) == 0 {
		return "none logged"
	}
	return strings.Join(declarers, ", ")
}

// firstEvent is when member m first printed event about member.
func firstEvent(m *localcluster.ReferenceMember, event, member string) (time.Time, bool) {
	for _, e := range m.Events() {
		if e.Event == event && e.Member == member {
			return e.Time(), true
		}
	}
	return time.Time{}, false
}

// startReferenceCluster starts five reference members, all joining the
// first, and waits until every one has printed member-join for all five
// (itself included). A start that lost a port race (another process took
// a port FreePort chose) is retried on fresh ports, up to three times.
func startReferenceCluster(b *testing.B, bin string, kind detectionKind, profile string) []*localcluster.ReferenceMember {
	b.Helper()
	dir := b.TempDir()
	for attempt := 1; ; attempt++ {
		var members []*localcluster.ReferenceMember
		for i := 1; i <= referenceMembers; i++ {
			m, err := localcluster.NewReferenceMember(bin, referenceMode[kind], profile, fmt.Sprintf("node%d", i))
			if err != nil {
				b.Fatal(err)
			}
			members = append(members, m)
		}
		for i, m := range members {
			join := ""
			if i > 0 {
				join = members[0].Addr()
			}
			logPath := filepath.Join(dir, fmt.Sprintf("%s-%d-%s.log", kind, attempt, m.Name))
			if err := m.Start(join, logPath); err != nil {
				b.Fatal(err)
			}
		}
		_, err := localcluster.Poll(context.Background(), benchPoll, 30*time.Second, func() error {
			for _, m := range members {
				select {
				case <-m.Exited():
					if strings.Contains(m.Log(), "address already in use") {
						return localcluster.Stop{Err: errPortTaken}
					}
					return localcluster.Stop{Err: fmt.Errorf("%s exited: %s", m.Name, m.Tail(5))}
				default:
				}
				joined := map[string]bool{}
				for _, e := range m.Events() {
					if e.Event == "member-join" {
						joined[e.Member] = true
					}
				}
				if len(joined) < referenceMembers {
					return fmt.Errorf("%s has seen %d of %d members join", m.Name, len(joined), referenceMembers)
				}
			}
			return nil
		})
		if err == nil {
			return members
		}
		for _, m := range members {
			m.Kill()
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			b.Fatalf("%d %s members (%s) joined: %v", referenceMembers, kind, profile, err)
		}
		b.Logf("attempt %d: %v; again on fresh ports", attempt, err)
	}
}

// loadAverage is the machine's one-minute load average, for the report
// ("?" if /proc/loadavg cannot be read).
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(raw))[0]
}

// referenceRows are the comparison's rows, in the order.
var referenceRows = []struct {
	name string
	kind detectionKind
}{
	{"memberlist alone (its default config)", kindMemberlist},
	{"Serf v0.10.2 member-failed", kindSerf},
	{"Steward, failed on every survivor", kindSteward},
}

// reportReference reports each kind's median and worst as metrics and logs
// a markdown table of them and one of the trials (use -v: without it, go
// test keeps only the first lines of a benchmark's log).
func reportReference(b *testing.B, profile string, trials []referenceTrialResult, loadBefore, loadAfter string) {
	b.ReportMetric(0, "ns/op")
	var sum strings.Builder
	fmt.Fprintf(&sum, "profile %s, trials of each kind: %d, load average %s before and %s after; seconds from SIGKILL until every survivor reports the victim failed:\n\n",
		profile, len(trials), loadBefore, loadAfter)
	fmt.Fprintf(&sum, "| %s | median | worst | trials seen |\n|---|---|---|---|\n", profile)
	stewardDead := collect(trials, func(t referenceTrialResult) time.Duration { return t.stewardGossipDead })
	for _, row := range referenceRows {
		ds := collect(trials, func(t referenceTrialResult) time.Duration { return t.times[row.kind] })
		if len(ds) == 0 {
			fmt.Fprintf(&sum, "| %s | never | never | 0 of %d |\n", row.name, len(trials))
			continue
		}
		b.ReportMetric(median(ds).Seconds(), string(row.kind)+"-median-s")
		b.ReportMetric(slices.Max(ds).Seconds(), string(row.kind)+"-worst-s")
		fmt.Fprintf(&sum, "| %s | %s | %s | %d of %d |\n", row.name, secs(median(ds)), secs(slices.Max(ds)), len(ds), len(trials))
	}
	if len(stewardDead) > 0 {
		fmt.Fprintf(&sum, "| (Steward's own memberlist dead everywhere, the profile's timings) | %s | %s | %d of %d |\n",
			secs(median(stewardDead)), secs(slices.Max(stewardDead)), len(stewardDead), len(trials))
	}
	fmt.Fprintf(&sum, "\n| trial | order | Steward failed | Steward's memberlist dead | Serf member-failed | memberlist alone dead | Serf: declared dead by (peer confirmations) | memberlist alone: declared dead by (peer confirmations) |\n|---|---|---|---|---|---|---|---|\n")
	for i, t := range trials {
		order := make([]string, len(t.order))
		for j, k := range t.order {
			order[j] = string(k)
		}
		fmt.Fprintf(&sum, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", i+1, strings.Join(order, ", "),
			secs(t.times[kindSteward]), secs(t.stewardGossipDead), secs(t.times[kindSerf]), secs(t.times[kindMemberlist]),
			t.declarers[kindSerf], t.declarers[kindMemberlist])
	}
	b.Log("\n" + sum.String())
}

// collect is the times of the trials that saw the event (field >= 0).
func collect(trials []referenceTrialResult, field func(referenceTrialResult) time.Duration) []time.Duration {
	var ds []time.Duration
	for _, t := range trials {
		if d := field(t); d >= 0 {
			ds = append(ds, d)
		}
	}
	return ds
}
