package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/agent"
)

func parseRun(t *testing.T, args []string, env map[string]string) (agent.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("agent run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadConfig(fs, args, func(k string) string { return env[k] })
}

var minimal = []string{"-node-id", "n1", "-data-dir", "/tmp/x", "-insecure"}

func TestDefaultsApplyWhenNothingIsGiven(t *testing.T) {
	cfg, err := parseRun(t, minimal, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Partitions != 0 || cfg.ReplicationFactor != 0 || cfg.Voters != 5 || cfg.FailureThreshold != 3 {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if cfg.HTTPAddr != "127.0.0.1:7948" || cfg.Bind != "127.0.0.1" {
		t.Fatalf("API and bind must default to loopback: %+v", cfg)
	}
	if cfg.ReapAfter.D() != 72*time.Hour {
		t.Fatalf("-reap-after defaults to %s, want 72h", cfg.ReapAfter)
	}
}

func TestPrecedenceIsDefaultsFileEnvFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "agent.json")
	os.WriteFile(file, []byte(`{"node_id":"from-file","data_dir":"/d","insecure":true,
		"partitions":64,"replication_factor":2,"zone":"file-zone","join":["127.0.0.1:1"],"leave_timeout":"7s"}`), 0o600)
	env := map[string]string{"STEWARD_PARTITIONS": "128", "STEWARD_ZONE": "env-zone", "STEWARD_JOIN": "127.0.0.1:2,127.0.0.1:3"}
	cfg, err := parseRun(t, []string{"-config", file, "-zone", "flag-zone", "--join", "127.0.0.1:4"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != "from-file" || cfg.ReplicationFactor != 2 || cfg.LeaveTimeout.D() != 7*time.Second {
		t.Fatalf("file values lost: %+v", cfg)
	}
	if cfg.Partitions != 128 {
		t.Fatalf("environment must override the file: partitions %d", cfg.Partitions)
	}
	if cfg.Zone != "flag-zone" {
		t.Fatalf("flags must override the environment: zone %q", cfg.Zone)
	}
	if strings.Join(cfg.Join, ",") != "127.0.0.1:4" {
		t.Fatalf("a -join flag replaces the lists of file and environment: %v", cfg.Join)
	}
}

func TestBadSettingsNameTheFlag(t *testing.T) {
	cases := map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"missing node id":    {[]string{"-data-dir", "/d", "-insecure"}, nil, "-node-id: required"},
		"even voters":        {append(minimal, "-voters", "4"), nil, "-voters"},
		"rf too large":       {append(minimal, "-replication-factor", "9"), nil, "-replication-factor"},
		"bad profile":        {append(minimal, "-profile", "moon"), nil, "-profile"},
		"bad bind":           {append(minimal, "-bind", "localhost:1"), nil, "-bind"},
		"unspecified bind":   {append(minimal, "-bind", "0.0.0.0"), nil, "-bind"},
		"bad join":           {append(minimal, "-join", "nohostport"), nil, "-join"},
		"not a number":       {append(minimal, "-partitions", "many"), nil, "-partitions"},
		"bad duration":       {append(minimal, "-leave-timeout", "soon"), nil, "-leave-timeout"},
		"bad env":            {minimal, map[string]string{"STEWARD_RAFT_PORT": "x"}, "STEWARD_RAFT_PORT"},
		"no key":             {[]string{"-node-id", "n", "-data-dir", "/d"}, nil, "agent keygen"},
		"key and insecure":   {append(minimal, "-encrypt", "abc"), nil, "-insecure"},
		"same ports":         {append(minimal, "-gossip-port", "9000", "-raft-port", "9000"), nil, "-raft-port"},
		"webhook not a url":  {append(minimal, "-webhook-url", "localhost/x"), nil, "-webhook-url"},
		"stray argument":     {append(minimal, "extra"), nil, "unexpected argument"},
		"remote webhook":     {append(minimal, "-webhook-url", "http://10.1.2.3/hook"), nil, "-webhook-allow-remote"},
		"unknown file field": {[]string{"-config", writeTemp(t, `{"node_idd":"x"}`)}, nil, "node_idd"},
		"reap never":         {append(minimal, "-reap-after", "0s"), nil, "-reap-after"},
		"reap before delay":  {append(minimal, "-reap-after", "1m", "-replace-delay", "1m"), nil, "-replace-delay"},
		"bad reap env":       {minimal, map[string]string{"STEWARD_REAP_AFTER": "3 days"}, "STEWARD_REAP_AFTER"},
		"provision no size":  {append(minimal, "-provision-url", "http://127.0.0.1:9/p", "-webhook-secret", "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIz"), nil, "needs -desired-nodes"},
		"provision unsigned": {append(minimal, "-provision-url", "http://127.0.0.1:9/p", "-desired-nodes", "3"), nil, "needs -webhook-secret"},
		"provision not url":  {append(minimal, "-provision-url", "nowhere", "-desired-nodes", "3"), nil, "-provision-url"},
		"negative desired":   {append(minimal, "-desired-nodes", "-1"), nil, "-desired-nodes"},
		"bad on-sigterm":     {append(minimal, "-on-sigterm", "reboot"), nil, "-on-sigterm"},
		"no restart grace":   {append(minimal, "-restart-grace", "0s"), nil, "-restart-grace"},
		"none unavailable":   {append(minimal, "-max-unavailable", "0"), nil, "-max-unavailable"},
		"bad on-sigterm env": {minimal, map[string]string{"STEWARD_ON_SIGTERM": "halt"}, "-on-sigterm"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseRun(t, c.args, c.env)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error mentioning %q, got %v", c.want, err)
			}
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadFlagExitsWithStatusTwoAndOneLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"run", "-node-id", "a", "-data-dir", t.TempDir(), "-insecure", "-voters", "2"}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit status %d, want 2", code)
	}
	if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; lines != 1 || !strings.Contains(stderr.String(), "-voters") {
		t.Fatalf("want one line naming -voters, got %q", stderr.String())
	}
}

func TestUnknownFlagExitsWithStatusTwo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"run", "-no-such-flag"}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit status %d, want 2", code)
	}
}

func TestEverySubcommandHasHelp(t *testing.T) {
	for _, cmd := range []string{"run", "dev", "members", "status", "partitions", "keygen", "leave", "maintenance", "force-leave", "keyring", "version"} {
		var stdout, stderr bytes.Buffer
		if code := realMain([]string{cmd, "-h"}, &stdout, &stderr); code != 0 {
			t.Errorf("%s -h: exit %d", cmd, code)
		}
		if !strings.Contains(stderr.String(), "Usage of agent "+cmd) {
			t.Errorf("%s -h printed no usage: %q", cmd, stderr.String())
		}
	}
}

func TestForceLeaveWithoutANodeIsAUsageError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"force-leave", "-http-addr", "127.0.0.1:1"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "name the node") {
		t.Fatalf("exit %d, stderr %q: want 2 and a line asking for the node", code, stderr.String())
	}
}

func TestVersionAndKeygen(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if realMain([]string{"version"}, &stdout, &stderr) != 0 || !strings.Contains(stdout.String(), agent.Version) {
		t.Fatalf("version: %q", stdout.String())
	}
	stdout.Reset()
	if realMain([]string{"keygen"}, &stdout, &stderr) != 0 || len(strings.TrimSpace(stdout.String())) != 44 {
		t.Fatalf("keygen must print a base64 32-byte key, got %q", stdout.String())
	}
}

func TestRemoteWebhookIsAllowedOnlyWhenAsked(t *testing.T) {
	if _, err := parseRun(t, append(minimal, "-webhook-url", "http://10.1.2.3/hook", "-webhook-allow-remote", "-app-addr", "127.0.0.1:9"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := parseRun(t, append(minimal, "-webhook-url", "http://localhost:9/hook", "-app-addr", "127.0.0.1:9"), nil); err != nil {
		t.Fatal(err)
	}
}

// -api-token-file is read by the agent: a file that cannot be read stops
// `agent run` with status 2 and one line naming the flag. (A token file that
// works is tested in package agent.)
func TestAnUnreadableTokenFileIsAUsageError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"run", "-node-id", "a", "-data-dir", t.TempDir(), "-insecure", "-api-token-file", "/nonexistent/token"}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "-api-token-file") {
		t.Fatalf("exit %d, stderr %q: want 2 and a line naming -api-token-file", code, stderr.String())
	}
}

// FuzzConfigFile: any config file content gives a config or an error, never
// a panic.
func FuzzConfigFile(f *testing.F) {
	f.Add(`{"node_id":"n","data_dir":"/d","insecure":true}`)
	f.Add(`{"join":["127.0.0.1:1"],"leave_timeout":"3s"}`)
	f.Add(`{"partitions":-1}`)
	f.Add(`[1,2]`)
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet("agent run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg, err := loadConfig(fs, []string{"-config", p}, func(string) string { return "" })
		if err == nil && cfg.Validate() != nil {
			t.Fatalf("accepted an invalid config: %+v", cfg)
		}
	})
}

// TestExampleConfigsAreValid keeps configs/*.json in step with the flags:
// every key is known and every value passes validation. A gossip key
// left as the "REPLACE: ..." placeholder is refused by name, and valid once
// replaced by a key.
func TestExampleConfigsAreValid(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.json")
	if err != nil || len(files) < 2 {
		t.Fatalf("example configs not found: %v %v", files, err)
	}
	for _, f := range files {
		if strings.Contains(f, "grafana") {
			continue
		}
		cfg := agent.DefaultConfig()
		if err := readConfigFile(f, &cfg); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if strings.HasPrefix(cfg.Encrypt, "REPLACE") {
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "-encrypt") {
				t.Errorf("%s: the key placeholder is not refused naming -encrypt: %v", f, err)
			}
			if cfg.Encrypt, err = newGossipKey(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
