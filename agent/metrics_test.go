package agent

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/failover"
)

var updateMetricsDoc = flag.Bool("update-metrics-doc", false, "rewrite docs/metrics.md from the registry")

// metricsDocPath is the generated reference, relative to this package.
const metricsDocPath = "../docs/metrics.md"

// metricFamily is what the reference says about one metric.
type metricFamily struct {
	name, typ, help string
	labels          []string
}

// gatherFamilies reads a's registry as a scrape would, without the Go
// runtime's and the process's metrics (their set changes with the Go
// release; the reference names them in one sentence).
func gatherFamilies(t *testing.T, a *Agent) []metricFamily {
	t.Helper()
	mfs, err := a.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []metricFamily
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "go_") || strings.HasPrefix(mf.GetName(), "process_") {
			continue
		}
		f := metricFamily{name: mf.GetName(), typ: strings.ToLower(mf.GetType().String()), help: mf.GetHelp()}
		if ms := mf.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				f.labels = append(f.labels, l.GetName())
			}
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b metricFamily) int { return strings.Compare(a.name, b.name) })
	return out
}

// renderMetricsDoc is docs/metrics.md.
func renderMetricsDoc(fams []metricFamily) string {
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n")
	b.WriteString("Every metric an agent serves on `GET /metrics` (on `-http-addr`, and on\n")
	b.WriteString("`-health-addr` when set), with its type, labels and help text. This file\n")
	b.WriteString("is generated from the agent's registry; do not edit it by hand. After\n")
	b.WriteString("changing a metric, run\n\n")
	b.WriteString("    go test ./agent -run TestTheMetricsReferenceIsGeneratedFromTheRegistry -update-metrics-doc\n\n")
	b.WriteString("(the same test, without the flag, fails in CI while this file is stale).\n")
	b.WriteString("Besides these, the agent serves the Go runtime's `go_*` and the process's\n")
	b.WriteString("`process_*` metrics of client_golang's standard collectors.\n\n")
	b.WriteString("Every series carries the scrape's `instance` label; `steward_node_info`\n")
	b.WriteString("maps it to the node ID: `... * on(instance) group_left(node_id) steward_node_info`.\n")
	b.WriteString("Counters whose labels take known values start at 0 for each of them.\n\n")
	b.WriteString("| Metric | Type | Labels | Help |\n| --- | --- | --- | --- |\n")
	for _, f := range fams {
		labels := "—"
		if len(f.labels) > 0 {
			labels = "`" + strings.Join(f.labels, "`, `") + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.name, f.typ, labels, strings.ReplaceAll(f.help, "|", `\|`))
	}
	return b.String()
}

// startSingleAgent starts a one-node cluster and waits until its
// partition table exists (the per-node series need members).
func startSingleAgent(t *testing.T, id string) *Agent {
	t.Helper()
	cfg := testConfig(t, id, t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.Partitions = 8
	cfg.Zone = "zone-a"
	a := startAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the partition table", func() error {
		n := 0
		a.raft.Read(func(c *failover.Cluster) { n = len(c.Partitions) })
		if n != cfg.Partitions {
			return fmt.Errorf("%d partitions", n)
		}
		return nil
	})
	return a
}

// docs/metrics.md lists exactly what a running agent's registry serves.
func TestTheMetricsReferenceIsGeneratedFromTheRegistry(t *testing.T) {
	a := startSingleAgent(t, "docs")
	// The per-node load series exist on the leader once a node reported.
	a.ctrl.Load().Record(a.cfg.NodeID, failover.NodeFigures{DiskCapacity: 100, DiskUsed: 10, Copies: map[int]failover.CopyFigures{}}, 0, a.clock.Elapsed())
	want := renderMetricsDoc(gatherFamilies(t, a))
	if *updateMetricsDoc {
		if err := os.WriteFile(metricsDocPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(metricsDocPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("docs/metrics.md is stale; regenerate it with\n  go test ./agent -run %s -update-metrics-doc\nwant:\n%s", t.Name(), want)
	}
}

// metricValue is the value of name's series whose labels include labels
// (name=value pairs), from a's registry; ok is false without one.
func metricValue(t *testing.T, a *Agent, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	mfs, err := a.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, want := range labels {
				if have[k] != want {
					continue series
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// One agent of a cluster that wants 3 copies of each partition: every
// partition is under-replicated, and the info metrics name the build and
// the node.
func TestALoneAgentWithThreeCopiesWantedReportsEveryPartitionUnderReplicated(t *testing.T) {
	a := startSingleAgent(t, "alone")
	if v, ok := metricValue(t, a, "steward_partitions_under_replicated", nil); !ok || v != 8 {
		t.Fatalf("steward_partitions_under_replicated = %v (present %v), want 8 (1 live copy of 3)", v, ok)
	}
	if v, ok := metricValue(t, a, "steward_node_info", map[string]string{"node_id": "alone", "zone": "zone-a"}); !ok || v != 1 {
		t.Fatalf("steward_node_info{node_id=alone,zone=zone-a} = %v (present %v), want 1", v, ok)
	}
	if v, ok := metricValue(t, a, "steward_build_info", map[string]string{"version": Version, "goversion": runtime.Version()}); !ok || v != 1 {
		t.Fatalf("steward_build_info{version=%s,goversion=%s} = %v (present %v), want 1", Version, runtime.Version(), v, ok)
	}
	if v, ok := metricValue(t, a, "steward_plan_actions_total", map[string]string{"kind": "promote"}); !ok || v != 0 {
		t.Fatalf("steward_plan_actions_total{kind=promote} = %v (present %v), want a 0 series before any promotion", v, ok)
	}
}

// referencedMetrics are the steward_* metric names an operations file
// uses, with the _bucket, _sum and _count of histograms taken back to the
// histogram's name.
func referencedMetrics(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range regexp.MustCompile(`steward_[a-z_]+`).FindAllString(string(b), -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// Every metric the alert rules, their tests and the Grafana dashboard use
// is one the agent serves: a renamed metric cannot leave a rule that never
// fires or a panel that stays empty.
func TestTheAlertsAndTheDashboardUseOnlyMetricsTheAgentServes(t *testing.T) {
	a := startSingleAgent(t, "ops-files")
	served := map[string]bool{}
	for _, f := range gatherFamilies(t, a) {
		served[f.name] = true
	}
	for _, path := range []string{"../configs/alerts.yaml", "../configs/alerts_test.yaml", "../configs/grafana-dashboard.json"} {
		names := referencedMetrics(t, path)
		if len(names) == 0 {
			t.Fatalf("%s names no steward_ metric", path)
		}
		for _, name := range names {
			if !served[name] {
				t.Errorf("%s uses %s, which the agent does not serve (docs/metrics.md)", path, name)
			}
		}
	}
}
