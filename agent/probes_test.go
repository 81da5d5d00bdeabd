package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// kubernetesManifest is the shipped Kubernetes example whose probes and
// scrape point at the agent's -health-addr listener.
const kubernetesManifest = "../configs/kubernetes-sidecar.yaml"

// submatches returns the first submatch of every match of re in s.
func submatches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// onlyValue is the one value the manifest gives for what.
func onlyValue(t *testing.T, values []string, what string) string {
	t.Helper()
	if len(values) != 1 {
		t.Fatalf("the manifest gives %d values for %s (%q), want one", len(values), what, values)
	}
	return values[0]
}

// The probes and the scrape of configs/kubernetes-sidecar.yaml reach the
// agent: the port they name is the one the agent's -health-addr listens on,
// and the agent serves their paths there (the kubelet cannot reach the API
// on 127.0.0.1). The manifest's agent.json is a valid config file.
func TestTheKubernetesProbesReachTheAgent(t *testing.T) {
	b, err := os.ReadFile(kubernetesManifest)
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(b)

	healthPort := onlyValue(t, submatches(regexp.MustCompile(`\{name: health, containerPort: (\d+)\}`), manifest), "the health containerPort")
	listenPort := onlyValue(t, submatches(regexp.MustCompile(`STEWARD_HEALTH_ADDR, value: "\$\(STEWARD_BIND\):(\d+)"`), manifest), "STEWARD_HEALTH_ADDR's port")
	scrapePort := onlyValue(t, submatches(regexp.MustCompile(`prometheus\.io/port: "(\d+)"`), manifest), "prometheus.io/port")
	if healthPort != listenPort || scrapePort != listenPort {
		t.Fatalf("containerPort health %s, STEWARD_HEALTH_ADDR port %s and prometheus.io/port %s must be one port", healthPort, listenPort, scrapePort)
	}
	probePaths := submatches(regexp.MustCompile(`httpGet: \{path: (\S+), port: health\}`), manifest)
	if len(probePaths) != 2 {
		t.Fatalf("want a liveness and a readiness probe on port health, found paths %q", probePaths)
	}
	scrapePath := onlyValue(t, submatches(regexp.MustCompile(`prometheus\.io/path: (\S+)`), manifest), "prometheus.io/path")

	cfg := testConfig(t, "kv-0", t.TempDir())
	cfg.BootstrapExpect = 1
	cfg.HealthAddr = "127.0.0.1:0"
	a := startAgent(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.HealthAddr()
	for _, path := range append(probePaths, scrapePath) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s on the health listener of a ready agent: %d, want 200", path, resp.StatusCode)
		}
	}
	// The listener serves nothing else: the table and the mutations stay
	// on the loopback API.
	for _, path := range []string{"/v1/partitions", "/v1/status", "/ui"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s on the health listener: %d, want 404", path, resp.StatusCode)
		}
	}

	configJSON := onlyValue(t, submatches(regexp.MustCompile(`(?s)agent\.json: \|\n(.*)$`), manifest), "agent.json")
	var fromFile Config
	dec := json.NewDecoder(strings.NewReader(configJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fromFile); err != nil {
		t.Fatalf("the manifest's agent.json: %v", err)
	}
}

// GET /v1/ready answers 503 with the reason until the agent's table is
// current, then 200; /v1/health answers 200 all along.
func TestReadinessWaitsForACurrentTable(t *testing.T) {
	cfg := testConfig(t, "waiting", t.TempDir())
	cfg.BootstrapExpect = 3 // never reached: no leader
	cfg.HealthAddr = "127.0.0.1:0"
	a := startAgent(t, cfg)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + a.HealthAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		return resp.StatusCode, body.String()
	}
	if code, body := get(ReadyPath); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready") {
		t.Fatalf("GET /v1/ready without a leader: %d %s", code, body)
	}
	if code, _ := get(HealthPath); code != http.StatusOK {
		t.Fatalf("GET /v1/health: %d", code)
	}
}

// -zone-file gives the zone; an empty file is an error that says so.
func TestTheZoneCanComeFromAFile(t *testing.T) {
	dir := t.TempDir()
	zoneFile := dir + "/zone"
	if err := os.WriteFile(zoneFile, []byte("eu-west-1b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "zoned", dir+"/data")
	cfg.ZoneFile = zoneFile
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.Zone != "eu-west-1b" {
		t.Fatalf("zone %q from the file, want eu-west-1b", a.cfg.Zone)
	}
	if err := os.WriteFile(zoneFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "-zone-file") || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty zone file: %v", err)
	}
	cfg.Zone = "set-too"
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "cannot be combined with -zone") {
		t.Fatalf("-zone and -zone-file: %v", err)
	}
}
