package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/steward-dev/steward/control"
	"github.com/steward-dev/steward/failover"
	"github.com/steward-dev/steward/gossip"
)

// Config is everything an agent can be told. Start from DefaultConfig and
// set at least NodeID, DataDir and either Encrypt or Insecure.
//
// The command (`agent run`) fills it from defaults, a JSON config file, the
// environment and flags, in that order of precedence: each field is a flag
// (-node-id), a key of the config file ("node_id", the json tag) and an
// environment variable (STEWARD_NODE_ID). Errors name the flag.
type Config struct {
	// NodeID is this node's stable logical ID. It names the node in the
	// API, the webhooks and the CLI, and survives restarts and rejoins.
	NodeID string `json:"node_id"`
	// DataDir holds raft's log and snapshots and the agent's own state.
	// Restarting with the same data dir resumes; an empty one is a fresh
	// incarnation of the node.
	DataDir string `json:"data_dir"`
	// Bind is the IP address gossip and raft listen on and advertise.
	Bind string `json:"bind"`
	// GossipPort is memberlist's TCP and UDP port; 0 picks a free one.
	GossipPort int `json:"gossip_port"`
	// RaftPort is raft's TCP port; it also carries followers' forwarded
	// writes and the agents' probes of each other. 0 picks a free one.
	RaftPort int `json:"raft_port"`
	// HTTPAddr is host:port of the agent's HTTP API. It binds 127.0.0.1
	// by default: the API is for the app and operators on this machine;
	// agents talk to each other over the raft port.
	HTTPAddr string `json:"http_addr"`
	// HealthAddr, when set, is host:port of a second HTTP listener that
	// serves only GET /v1/health (liveness), GET /v1/ready (readiness: 503
	// until the agent's table is current) and GET /metrics: what a kubelet
	// or Prometheus reaches from off the host (bind it to the pod IP),
	// while the API itself stays on HTTPAddr, on loopback. Nothing on it
	// reads the partition table or changes anything.
	HealthAddr string `json:"health_addr"`
	// Join lists host:port gossip addresses of any members to join at start.
	Join []string `json:"join"`
	// JoinTimeout bounds how long -join keeps retrying before the agent
	// gives up and exits with an error.
	JoinTimeout Duration `json:"join_timeout"`
	// BootstrapExpect: this many agents form the first cluster once they see
	// each other in gossip. 0 means this agent never bootstraps a cluster
	// and waits to be added to an existing one.
	BootstrapExpect int `json:"bootstrap_expect"`
	// Partitions is how many partitions a new cluster's default resource
	// gets (DefaultPartitions when 0). It only applies at bootstrap; an
	// agent with stored state whose Partitions is set and differs from the
	// stored setting refuses to start, so that a mistaken change is not
	// silently ignored. 0, the default, takes whatever the cluster has: an
	// agent that joins a cluster of 64 partitions restarts without a flag.
	Partitions int `json:"partitions"`
	// ReplicationFactor is the number of copies of each partition of a new
	// cluster's default resource, primary included (DefaultReplicationFactor
	// when 0). Like Partitions, it only applies at bootstrap and a stored
	// setting it contradicts stops the start; change it at run time with
	// agent resource set-rf.
	ReplicationFactor int `json:"replication_factor"`
	// WebhookURL is the app's endpoint for partition events; empty means no
	// app is attached and copies complete at once.
	WebhookURL string `json:"webhook_url"`
	// AppHealthURL is probed to decide whether the co-located app is healthy.
	AppHealthURL string `json:"app_health_url"`
	// AppAddr is the app's data address, given to peers that copy from it.
	AppAddr string `json:"app_addr"`
	// Zone is this node's failure domain; copies of a partition are spread
	// over zones.
	Zone string `json:"zone"`
	// ZoneFile names a file whose first line is this node's zone, for
	// where the zone is known only at start: a Kubernetes init container
	// writes the node's topology.kubernetes.io/zone label there (see
	// configs/kubernetes-sidecar.yaml). It cannot be combined with Zone.
	ZoneFile string `json:"zone_file"`
	// Tags are this node's labels, "k=v,k2=v2", which resources' node
	// selectors match (agent resource create -nodes). The agent records
	// them in the cluster state itself once its member is registered (they
	// are not gossiped: gossip metadata has a small fixed size).
	Tags string `json:"tags"`
	// Weight is this node's relative capacity (partitions are spread in
	// proportion to it).
	Weight int `json:"weight"`
	// Voters is the target number of raft voters (odd). With fewer agents,
	// the largest odd number not above their count.
	Voters int `json:"voters"`
	// FailureThreshold is how many consecutive failed probes make a node
	// failed.
	FailureThreshold int `json:"failure_threshold"`
	// ProbeInterval is the time between probes of a suspect node; 0 takes
	// the profile's default.
	ProbeInterval Duration `json:"probe_interval"`
	// MaxFailed: when more members than this are failed at once, automatic
	// removals freeze (it is more likely a network fault than deaths).
	// 0 means a third of the cluster, rounded up.
	MaxFailed int `json:"max_failed"`
	// MaxMigrationsPerNode bounds the copies in flight one node takes part in.
	MaxMigrationsPerNode int `json:"max_migrations_per_node"`
	// MaxMigrations bounds the copies in flight in the whole cluster.
	MaxMigrations int `json:"max_migrations"`
	// MigrationTimeout: a copy not acknowledged within it is re-planned.
	MigrationTimeout Duration `json:"migration_timeout"`
	// ReplaceDelay is how long to wait before re-creating the copies of a
	// failed node elsewhere (a node back in time resyncs instead).
	// Promotions never wait.
	ReplaceDelay Duration `json:"replace_delay"`
	// DiskFullPct: a node whose app reports its disk fuller than this
	// percentage sheds copies until it is under it (POST /v1/app/load).
	DiskFullPct float64 `json:"disk_full_pct"`
	// DiskHighPct: a node whose app reports its disk fuller than this
	// percentage takes no new copies. At most DiskFullPct.
	DiskHighPct float64 `json:"disk_high_pct"`
	// LoadHysteresis: a partition whose placement changed less than this
	// long ago is not moved or promoted for load.
	LoadHysteresis Duration `json:"load_hysteresis"`
	// BalanceBy is what the planner balances over the nodes: "count"
	// (the default: copies and primaries by number; the apps' disk
	// figures still stop copies to a disk over DiskHighPct and shed a disk
	// over DiskFullPct) or "load" (counts first, within a band of 5 % of
	// the share, at least 2, then the apps' reported load, or size where
	// none report load, balanced within it, with LoadHysteresis between
	// two moves of a partition for load).
	BalanceBy string `json:"balance_by"`
	// ReapAfter is how long a member may stay failed or departed before the
	// leader forgets it (agent force-leave does it at once). Measured on the
	// leader's monotonic clock from when it saw the status change; an agent
	// that restarts begins counting again.
	ReapAfter Duration `json:"reap_after"`
	// DesiredNodes is how many members the cluster should have in service
	// (0: no desired size). When fewer are for ProvisionGrace, the leader
	// asks ProvisionURL for hosts, and keeps asking until they join.
	// Give every agent the same value: whichever leads does the asking.
	DesiredNodes int `json:"desired_nodes"`
	// ProvisionURL receives the leader's signed requests for hosts (POST,
	// JSON, signed with WebhookSecret as webhooks are): how many are
	// missing, and in which zones. Requires DesiredNodes and an explicit
	// WebhookSecret (the provisioner verifies with it).
	ProvisionURL string `json:"provision_url"`
	// ProvisionGrace is how long the cluster must stay short of
	// DesiredNodes before the first request (a restart or a quick rejoin
	// does not order a host). Default 30 s.
	ProvisionGrace Duration `json:"provision_grace"`
	// Profile selects gossip and probe timings: local, lan or wan.
	Profile string `json:"profile"`
	// Encrypt is the base64 gossip encryption key (agent keygen makes one).
	Encrypt string `json:"encrypt"`
	// Insecure runs gossip without encryption. Without it, an agent with no
	// key refuses to start.
	Insecure bool `json:"insecure"`
	// TLSCert is this node's certificate (PEM) for mutual TLS on the raft
	// port (raft traffic, forwarded writes, probes between agents). TLSCert,
	// TLSKey and TLSCA are given all three or none; see GenerateTestCA.
	TLSCert string `json:"tls_cert"`
	// TLSKey is the private key of TLSCert (PEM, mode 0600).
	TLSKey string `json:"tls_key"`
	// TLSCA is the certificate of the CA that signs every node's
	// certificate (PEM).
	TLSCA string `json:"tls_ca"`
	// TLSServerName, when set, is the name every agent's certificate
	// carries (a DNS SAN) and that agents verify when they dial each other,
	// instead of the peer's IP address: for addresses that change, such as
	// pod IPs, with one cluster-wide name (e.g. the headless service's).
	TLSServerName string `json:"tls_server_name"`
	// APIToken, when set, is required as "Authorization: Bearer <token>" on
	// mutating API calls (and the keyring listing).
	APIToken string `json:"api_token"`
	// APITokenFile names a file holding the API token (first line), so that
	// the token need not appear in a process listing or unit file. The agent
	// reads it in New; it cannot be combined with APIToken.
	APITokenFile string `json:"api_token_file"`
	// WebhookSecret signs webhooks ("whsec_" + base64). When empty, one is
	// generated and kept in the data dir (mode 0600).
	WebhookSecret string `json:"webhook_secret"`
	// WebhookAllowRemote allows a webhook URL off the loopback range. The
	// app is co-located by design; a remote URL is usually a mistake that
	// would send partition assignments across the network.
	WebhookAllowRemote bool `json:"webhook_allow_remote"`
	// LeaveTimeout bounds a graceful leave, and the steps of a planned
	// restart before the agent exits.
	LeaveTimeout Duration `json:"leave_timeout"`
	// OnSigterm is what SIGTERM (and SIGINT) does: "leave" (the default)
	// leaves the cluster, its copies moved away; "restart" is a planned
	// restart, its copies kept for it (see Restart).
	OnSigterm string `json:"on_sigterm"`
	// RestartGrace is how long a node away for a planned restart may stay
	// away before the leader treats it as failed and restores the
	// replication factor.
	RestartGrace Duration `json:"restart_grace"`
	// MaxUnavailable is how many members may be away for planned restarts
	// at once; a restart beyond it is refused (409). Give every agent the
	// same value: the node that restarts proposes it.
	MaxUnavailable int `json:"max_unavailable"`
	// LogLevel is trace, debug, info, warn or error. The agent logs to the
	// logger given to New; the command builds that logger from LogLevel and
	// LogJSON.
	LogLevel string `json:"log_level"`
	// LogJSON writes logs as JSON lines (see LogLevel).
	LogJSON bool `json:"log_json"`
}

// DefaultPartitions and DefaultReplicationFactor are what a new cluster's
// default resource gets when Config.Partitions or ReplicationFactor is 0.
const (
	DefaultPartitions        = 256
	DefaultReplicationFactor = 3
)

// DefaultConfig returns the settings an agent runs with when nothing else is
// given: loopback addresses, the usual ports (7946 gossip, 7947 raft, 7948
// HTTP), a new cluster of 256 partitions of 3 copies (Partitions and
// ReplicationFactor 0: the cluster's own settings, those for a new one),
// 5 voters, the lan profile.
func DefaultConfig() Config {
	return Config{
		Bind:                 "127.0.0.1",
		GossipPort:           7946,
		RaftPort:             7947,
		HTTPAddr:             "127.0.0.1:7948",
		JoinTimeout:          Duration(60 * time.Second),
		Voters:               5,
		FailureThreshold:     3,
		MaxMigrationsPerNode: 2,
		MaxMigrations:        32,
		MigrationTimeout:     Duration(10 * time.Minute),
		ReapAfter:            Duration(72 * time.Hour),
		DiskFullPct:          95,
		DiskHighPct:          92.5,
		LoadHysteresis:       Duration(5 * time.Minute),
		BalanceBy:            "count",
		ProvisionGrace:       Duration(30 * time.Second),
		Profile:              "lan",
		LeaveTimeout:         Duration(30 * time.Second),
		OnSigterm:            OnSigtermLeave,
		RestartGrace:         Duration(5 * time.Minute),
		MaxUnavailable:       1,
		LogLevel:             "info",
		Weight:               1,
	}
}

// Duration is a time.Duration that reads and writes as "1.5s" in JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Set parses a flag value.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration (like 500ms or 2s): %q", s)
	}
	if v < 0 {
		return fmt.Errorf("must not be negative: %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("must be a string like \"2s\"")
	}
	return d.Set(s)
}

// ConfigError is a bad setting, or a data dir or file a setting names that
// cannot be used as it is. Its message names the flag (-node-id: ...); the
// command exits with status 2 on it.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Sprintf(format, args...)}
}

// keyringFileName is the gossip keyring kept in the data dir once a key
// was given; it then takes precedence over -encrypt, so that a rotated
// keyring survives restarts.
const keyringFileName = "gossip-keyring.json"

func countSet(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// apiToken is the API token: APIToken, or the first line of APITokenFile.
func (c Config) apiToken() (string, error) {
	if c.APITokenFile == "" {
		return c.APIToken, nil
	}
	b, err := os.ReadFile(c.APITokenFile)
	if err != nil {
		return "", configErrorf("-api-token-file: %v", err)
	}
	tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if tok == "" {
		return "", configErrorf("-api-token-file: %s is empty", c.APITokenFile)
	}
	return tok, nil
}

// validListenAddr checks the host:port of the listener flag names.
func validListenAddr(flag, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil {
		return configErrorf("-%s: %q is not host:port", flag, addr)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return configErrorf("-%s: %q has no valid port", flag, addr)
	}
	return nil
}

// zoneFromFile is the first line of ZoneFile, the zone.
func (c Config) zoneFromFile() (string, error) {
	b, err := os.ReadFile(c.ZoneFile)
	if err != nil {
		return "", configErrorf("-zone-file: %v", err)
	}
	zone := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if zone == "" {
		return "", configErrorf("-zone-file: %s is empty (the init container that writes it found no zone?)", c.ZoneFile)
	}
	return zone, nil
}

// validNodeID checks the form of NodeID: 1 to 64 printable characters
// without spaces or slashes.
func (c Config) validNodeID() error {
	ok := c.NodeID != "" && len(c.NodeID) <= 64 && !strings.ContainsAny(c.NodeID, " \t\n/\\")
	for _, r := range c.NodeID {
		ok = ok && unicode.IsPrint(r)
	}
	if !ok {
		return configErrorf("-node-id: %q must be 1 to 64 printable characters without spaces or slashes", c.NodeID)
	}
	return nil
}

// Validate checks every setting and names the flag of the first bad one.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return configErrorf("-node-id: required")
	}
	if err := c.validNodeID(); err != nil {
		return err
	}
	if c.DataDir == "" {
		return configErrorf("-data-dir: required")
	}
	if ip := net.ParseIP(c.Bind); ip == nil {
		return configErrorf("-bind: %q is not an IP address", c.Bind)
	} else if ip.IsUnspecified() {
		return configErrorf("-bind: %q cannot be advertised to peers; give this machine's address", c.Bind)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"gossip-port", c.GossipPort}, {"raft-port", c.RaftPort}} {
		if p.v < 0 || p.v > 65535 {
			return configErrorf("-%s: %d is not a port (0-65535)", p.name, p.v)
		}
	}
	if c.GossipPort != 0 && c.GossipPort == c.RaftPort {
		return configErrorf("-raft-port: %d is also the gossip port", c.RaftPort)
	}
	if err := validListenAddr("http-addr", c.HTTPAddr); err != nil {
		return err
	}
	if c.HealthAddr != "" {
		if err := validListenAddr("health-addr", c.HealthAddr); err != nil {
			return err
		}
	}
	if c.Zone != "" && c.ZoneFile != "" {
		return configErrorf("-zone-file: cannot be combined with -zone")
	}
	if _, err := failover.ParseTags(c.Tags); err != nil {
		return configErrorf("-tags: %s", strings.TrimPrefix(err.Error(), "failover: "))
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return configErrorf("-join: %q is not host:port", j)
		}
	}
	if c.BootstrapExpect < 0 {
		return configErrorf("-bootstrap-expect: must not be negative")
	}
	if c.Partitions < 0 || c.Partitions > 65536 {
		return configErrorf("-partitions: %d is not between 1 and 65536", c.Partitions)
	}
	if c.ReplicationFactor < 0 || c.ReplicationFactor > 7 {
		return configErrorf("-replication-factor: %d is not between 1 and 7", c.ReplicationFactor)
	}
	if c.Voters < 1 || c.Voters%2 == 0 {
		return configErrorf("-voters: %d must be odd and at least 1", c.Voters)
	}
	if c.FailureThreshold < 1 {
		return configErrorf("-failure-threshold: must be at least 1")
	}
	if c.MaxFailed < 0 {
		return configErrorf("-max-failed: must not be negative")
	}
	if c.MaxMigrationsPerNode < 1 {
		return configErrorf("-max-migrations-per-node: must be at least 1")
	}
	if c.MaxMigrations < 1 {
		return configErrorf("-max-migrations: must be at least 1")
	}
	if c.ReapAfter <= 0 {
		return configErrorf("-reap-after: must be positive (failed members are forgotten after it)")
	}
	if !(c.DiskFullPct > 0 && c.DiskFullPct <= 100) {
		return configErrorf("-disk-full: %v is not a percentage in (0, 100]", c.DiskFullPct)
	}
	if !(c.DiskHighPct > 0 && c.DiskHighPct <= c.DiskFullPct) {
		return configErrorf("-disk-high: %v must be a percentage above 0 and at most -disk-full %v", c.DiskHighPct, c.DiskFullPct)
	}
	if c.BalanceBy != "count" && c.BalanceBy != "load" {
		return configErrorf("-balance-by: %q is neither count nor load", c.BalanceBy)
	}
	if c.LoadHysteresis < 0 {
		return configErrorf("-load-hysteresis: must not be negative")
	}
	if c.ReapAfter <= c.ReplaceDelay {
		return configErrorf("-reap-after: %s must be longer than -replace-delay %s (a member is not forgotten while its copies wait for it)", c.ReapAfter, c.ReplaceDelay)
	}
	if c.ProbeInterval != 0 && c.ProbeInterval.D() < 10*time.Millisecond {
		return configErrorf("-probe-interval: %s is too short (at least 10ms)", c.ProbeInterval)
	}
	if c.Weight < 1 || c.Weight > 1000 {
		return configErrorf("-weight: %d is not between 1 and 1000", c.Weight)
	}
	if _, err := control.ParseProfile(c.Profile); err != nil {
		return configErrorf("-profile: %q is not local, lan or wan", c.Profile)
	}
	for _, u := range []struct{ name, v string }{{"webhook-url", c.WebhookURL}, {"app-health-url", c.AppHealthURL}} {
		if u.v == "" {
			continue
		}
		parsed, err := url.Parse(u.v)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return configErrorf("-%s: %q must be an http:// or https:// URL", u.name, u.v)
		}
		if !c.WebhookAllowRemote && !isLoopbackHost(parsed.Hostname()) {
			return configErrorf("-%s: %q is not on this machine (loopback); the app is co-located, or pass -webhook-allow-remote", u.name, u.v)
		}
	}
	if c.DesiredNodes < 0 {
		return configErrorf("-desired-nodes: must not be negative")
	}
	if c.ProvisionURL != "" {
		parsed, err := url.Parse(c.ProvisionURL)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return configErrorf("-provision-url: %q must be an http:// or https:// URL", c.ProvisionURL)
		}
		if c.DesiredNodes == 0 {
			return configErrorf("-provision-url: needs -desired-nodes (how many members the cluster should have)")
		}
		if c.WebhookSecret == "" {
			return configErrorf("-provision-url: needs -webhook-secret: requests to the provisioner are signed with it, and whichever agent leads must sign with the same secret")
		}
	}
	if c.ProvisionGrace < 0 {
		return configErrorf("-provision-grace: must not be negative")
	}
	if c.WebhookURL != "" && c.AppAddr == "" {
		return configErrorf("-app-addr: required with -webhook-url (peers copy partitions from the app at this address)")
	}
	if c.AppAddr != "" {
		if _, _, err := net.SplitHostPort(c.AppAddr); err != nil {
			return configErrorf("-app-addr: %q is not host:port", c.AppAddr)
		}
	}
	if c.APIToken != "" && c.APITokenFile != "" {
		return configErrorf("-api-token-file: cannot be combined with -api-token")
	}
	if c.Encrypt != "" && c.Insecure {
		return configErrorf("-insecure: cannot be combined with -encrypt")
	}
	if c.Encrypt != "" {
		// Checked here, before Start creates the data dir and binds it to
		// the node ID: a bad key must change nothing.
		if _, err := gossip.ParseKey(c.Encrypt); err != nil {
			return configErrorf("-encrypt: %v", err)
		}
	}
	if c.Encrypt == "" && !c.Insecure {
		if _, err := os.Stat(filepath.Join(c.DataDir, keyringFileName)); err != nil {
			return configErrorf("-encrypt: gossip needs an encryption key; make one with 'agent keygen' and pass it to every agent, or run with -insecure")
		}
	}
	if n := countSet(c.TLSCert, c.TLSKey, c.TLSCA); n != 0 && n != 3 {
		return configErrorf("-tls-cert, -tls-key and -tls-ca: give all three or none")
	}
	if c.TLSServerName != "" && c.TLSCert == "" {
		return configErrorf("-tls-server-name: needs -tls-cert, -tls-key and -tls-ca")
	}
	if c.OnSigterm != OnSigtermLeave && c.OnSigterm != OnSigtermRestart {
		return configErrorf("-on-sigterm: %q is not leave or restart", c.OnSigterm)
	}
	if c.RestartGrace <= 0 {
		return configErrorf("-restart-grace: must be positive (a restarting node is failed once it is over)")
	}
	if c.MaxUnavailable < 1 {
		return configErrorf("-max-unavailable: must be at least 1")
	}
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		return configErrorf("-log-level: %q is not trace, debug, info, warn or error", c.LogLevel)
	}
	return nil
}

// bootstrapPartitions is the partition count a new cluster gets.
func (c Config) bootstrapPartitions() int {
	if c.Partitions == 0 {
		return DefaultPartitions
	}
	return c.Partitions
}

// bootstrapReplicationFactor is the replication factor a new cluster gets.
func (c Config) bootstrapReplicationFactor() int {
	if c.ReplicationFactor == 0 {
		return DefaultReplicationFactor
	}
	return c.ReplicationFactor
}
