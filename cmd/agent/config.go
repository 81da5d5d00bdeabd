package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/steward-dev/steward/agent"
)

// This file reads `agent run`'s settings: defaults, then the JSON config
// file, then the environment, then flags, merged in one place (loadConfig)
// into an agent.Config.

// stringList is a repeatable flag; a comma-separated value adds several.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// flagSpec ties one setting to its flag name and its help text, so that
// flags, environment variables and the config file are defined once.
type flagSpec struct {
	name  string
	usage string
	value flag.Value
}

// runFlags declares every `agent run` flag over cfg.
func runFlags(cfg *agent.Config) []flagSpec {
	return []flagSpec{
		{"node-id", "stable logical ID of this node (required)", (*stringValue)(&cfg.NodeID)},
		{"data-dir", "directory for raft state and the agent's own state (required)", (*stringValue)(&cfg.DataDir)},
		{"bind", "IP address gossip and raft listen on and advertise", (*stringValue)(&cfg.Bind)},
		{"gossip-port", "gossip (memberlist) TCP+UDP port; 0 picks a free one", (*intValue)(&cfg.GossipPort)},
		{"raft-port", "raft TCP port; 0 picks a free one", (*intValue)(&cfg.RaftPort)},
		{"http-addr", "host:port of the HTTP API", (*stringValue)(&cfg.HTTPAddr)},
		{"health-addr", "host:port of a listener serving only /v1/health, /v1/ready and /metrics, for probes and scrapes from off the host (empty: none)", (*stringValue)(&cfg.HealthAddr)},
		{"join", "host:port of a member's gossip port to join (repeatable, or comma-separated)", (*stringList)(&cfg.Join)},
		{"join-timeout", "how long -join keeps retrying", &cfg.JoinTimeout},
		{"bootstrap-expect", "form the first cluster once this many agents see each other (0: never bootstrap)", (*intValue)(&cfg.BootstrapExpect)},
		{"partitions", "number of partitions of a new cluster (256 when not given; fixed at bootstrap: a restart with another value is refused)", (*intValue)(&cfg.Partitions)},
		{"replication-factor", "copies of each partition of a new cluster, primary included (3 when not given; fixed at bootstrap, changed with agent resource set-rf)", (*intValue)(&cfg.ReplicationFactor)},
		{"webhook-url", "the app's webhook endpoint (empty: no app attached)", (*stringValue)(&cfg.WebhookURL)},
		{"app-health-url", "URL probed for the app's health", (*stringValue)(&cfg.AppHealthURL)},
		{"app-addr", "the app's data address given to peers that copy from it", (*stringValue)(&cfg.AppAddr)},
		{"zone", "failure domain of this node", (*stringValue)(&cfg.Zone)},
		{"zone-file", "file whose first line is this node's zone (written e.g. by a Kubernetes init container)", (*stringValue)(&cfg.ZoneFile)},
		{"tags", "labels of this node, k=v,k2=v2, matched by resources' node selectors (agent resource create -nodes)", (*stringValue)(&cfg.Tags)},
		{"weight", "relative capacity of this node", (*intValue)(&cfg.Weight)},
		{"voters", "target number of raft voters (odd)", (*intValue)(&cfg.Voters)},
		{"failure-threshold", "consecutive failed probes before a node is failed", (*intValue)(&cfg.FailureThreshold)},
		{"probe-interval", "time between probes of a suspect node (0: the profile's)", &cfg.ProbeInterval},
		{"max-failed", "freeze automatic removals when more members than this are failed at once (0: a third)", (*intValue)(&cfg.MaxFailed)},
		{"max-migrations-per-node", "copies in flight one node takes part in", (*intValue)(&cfg.MaxMigrationsPerNode)},
		{"max-migrations", "copies in flight in the whole cluster", (*intValue)(&cfg.MaxMigrations)},
		{"migration-timeout", "a copy not acknowledged within this is re-planned", &cfg.MigrationTimeout},
		{"replace-delay", "wait before re-creating a failed node's copies elsewhere", &cfg.ReplaceDelay},
		{"reap-after", "forget a member failed or departed for this long", &cfg.ReapAfter},
		{"disk-full", "percentage of its disk above which a node sheds copies (from its app's load report)", (*floatValue)(&cfg.DiskFullPct)},
		{"disk-high", "percentage of its disk above which a node takes no new copies", (*floatValue)(&cfg.DiskHighPct)},
		{"load-hysteresis", "a partition moved less than this long ago is not moved again for load", &cfg.LoadHysteresis},
		{"balance-by", "count (copies and primaries by number; disk figures still apply) or load (counts within a band, the apps' reported load balanced within it)", (*stringValue)(&cfg.BalanceBy)},
		{"desired-nodes", "members the cluster should have in service (0: none); the leader asks -provision-url for hosts when short", (*intValue)(&cfg.DesiredNodes)},
		{"provision-url", "the provisioner the leader asks for hosts (signed with -webhook-secret)", (*stringValue)(&cfg.ProvisionURL)},
		{"provision-grace", "how long the cluster stays short of -desired-nodes before the provisioner is asked", &cfg.ProvisionGrace},
		{"profile", "timing profile: local, lan or wan", (*stringValue)(&cfg.Profile)},
		{"encrypt", "base64 gossip encryption key (see agent keygen)", (*stringValue)(&cfg.Encrypt)},
		{"insecure", "run gossip without encryption", (*boolValue)(&cfg.Insecure)},
		{"tls-cert", "this node's certificate for raft mutual TLS (PEM)", (*stringValue)(&cfg.TLSCert)},
		{"tls-key", "this node's private key for raft mutual TLS (PEM)", (*stringValue)(&cfg.TLSKey)},
		{"tls-ca", "the CA certificate that signs every node's certificate (PEM)", (*stringValue)(&cfg.TLSCA)},
		{"tls-server-name", "the name (DNS SAN) every agent's certificate carries and peers verify, instead of the peer's IP", (*stringValue)(&cfg.TLSServerName)},
		{"api-token", "bearer token required by mutating API calls", (*stringValue)(&cfg.APIToken)},
		{"api-token-file", "file holding the API token (first line)", (*stringValue)(&cfg.APITokenFile)},
		{"webhook-secret", "secret that signs webhooks (whsec_...; generated into the data dir when empty)", (*stringValue)(&cfg.WebhookSecret)},
		{"webhook-allow-remote", "allow a webhook URL off the loopback range", (*boolValue)(&cfg.WebhookAllowRemote)},
		{"leave-timeout", "bound on a graceful leave (and on a planned restart's steps before the exit)", &cfg.LeaveTimeout},
		{"on-sigterm", "what SIGTERM does: leave (copies moved away) or restart (a planned restart: copies kept, exit 0)", (*stringValue)(&cfg.OnSigterm)},
		{"restart-grace", "how long a node away for a planned restart may stay away before it is treated as failed", &cfg.RestartGrace},
		{"max-unavailable", "how many members may be away for planned restarts at once", (*intValue)(&cfg.MaxUnavailable)},
		{"log-level", "trace, debug, info, warn or error", (*stringValue)(&cfg.LogLevel)},
		{"log-json", "log as JSON lines", (*boolValue)(&cfg.LogJSON)},
	}
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

type intValue int

func (i *intValue) String() string { return strconv.Itoa(int(*i)) }
func (i *intValue) Set(v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("not a whole number: %q", v)
	}
	*i = intValue(n)
	return nil
}

type floatValue float64

func (f *floatValue) String() string { return strconv.FormatFloat(float64(*f), 'g', -1, 64) }
func (f *floatValue) Set(v string) error {
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return fmt.Errorf("not a number: %q", v)
	}
	*f = floatValue(n)
	return nil
}

type boolValue bool

func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }
func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("not true or false: %q", v)
	}
	*b = boolValue(x)
	return nil
}

// envName is the environment variable of a flag: node-id -> STEWARD_NODE_ID.
func envName(flagName string) string {
	return "STEWARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// loadConfig merges defaults < config file < environment < flags for
// `agent run`, then validates. getenv is os.Getenv outside tests.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (agent.Config, error) {
	// First pass: flags into a scratch config, to learn -config and which
	// flags were given. Values are applied in precedence order below.
	scratch := agent.DefaultConfig()
	var configPath string
	specs := runFlags(&scratch)
	for _, s := range specs {
		fs.Var(s.value, s.name, s.usage)
	}
	fs.StringVar(&configPath, "config", "", "JSON config file (keys are flag names with underscores)")
	if err := parseFlags(fs, args); err != nil {
		return agent.Config{}, err
	}
	if fs.NArg() > 0 {
		return agent.Config{}, usagef("unexpected argument %q (flags only)", fs.Arg(0))
	}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	if configPath == "" {
		configPath = getenv("STEWARD_CONFIG")
	}

	cfg := agent.DefaultConfig()
	if configPath != "" {
		if err := readConfigFile(configPath, &cfg); err != nil {
			return agent.Config{}, err
		}
	}
	final := runFlags(&cfg)
	for _, s := range final {
		v := getenv(envName(s.name))
		if v == "" {
			continue
		}
		if _, isList := s.value.(*stringList); isList {
			cfg.Join = nil
		}
		if err := s.value.Set(v); err != nil {
			return agent.Config{}, usagef("%s: %v", envName(s.name), err)
		}
	}
	for _, s := range final {
		if _, ok := given[s.name]; !ok {
			continue
		}
		if _, isList := s.value.(*stringList); isList {
			cfg.Join = append([]string(nil), scratch.Join...)
			continue
		}
		if err := s.value.Set(given[s.name]); err != nil {
			return agent.Config{}, usagef("-%s: %v", s.name, err)
		}
	}
	return cfg, cfg.Validate()
}

func readConfigFile(path string, cfg *agent.Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usagef("-config: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return usagef("-config %s: %v", path, err)
	}
	if dec.More() {
		return usagef("-config %s: trailing data after the JSON object", path)
	}
	return nil
}
