package raftctl

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config configures a Node. Start from DefaultConfig and override fields.
type Config struct {
	// ServerID is this server's raft ID. It must be unique in the cluster and
	// stable across restarts that keep the data dir. A server that comes back
	// with an empty data dir should use a new ID (see DESIGN.md, Traps: a
	// removed server that restarts with its old state keeps asking for votes).
	ServerID string

	// BindAddr is the host:port the raft TCP transport listens on. Port 0
	// picks a free port; Addr reports the one chosen, and that actual address
	// is what other servers are told unless AdvertiseAddr says otherwise.
	BindAddr string

	// AdvertiseAddr, if set, is the host:port other servers use to reach
	// this one (e.g. when binding 0.0.0.0). A port of 0 means "the port
	// actually bound". When empty, the bound address is advertised, which
	// must then be a specific IP, not 0.0.0.0.
	AdvertiseAddr string

	// DataDir holds raft's state under DataDir/raft: raft.db (the bbolt log
	// and stable store) and snapshots/. Ignored when InMemory is set.
	DataDir string

	// InMemory keeps the log, stable store and snapshots in memory (raft's
	// InmemStore and InmemSnapshotStore). For tests and `agent dev`; all
	// state is lost on Shutdown. The transport is still real TCP.
	InMemory bool

	// Logger receives raft's, the transport's and the snapshot store's logs.
	// Nil discards them.
	Logger hclog.Logger

	// HeartbeatTimeout is how long a follower goes without hearing from the
	// leader before it starts an election (randomised up to twice this).
	HeartbeatTimeout time.Duration

	// ElectionTimeout is how long a candidate waits for votes before it
	// starts a new election (randomised up to twice this).
	ElectionTimeout time.Duration

	// LeaderLeaseTimeout is how long a leader stays leader without
	// contact from a quorum before it steps down. Must not exceed
	// HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration

	// CommitTimeout bounds how long a follower may wait to learn a new
	// commit index when there is no other traffic: the leader sends an
	// AppendEntries at least this often, to every follower, idle or not.
	// The leader also announces each command's commit at once (announce.go),
	// so followers apply commands without waiting for it.
	CommitTimeout time.Duration

	// AnnounceCommits makes the leader tell its followers the new commit
	// index after each command it applies, with an AppendEntries of its
	// own that carries no entry (announce.go): with it, a long CommitTimeout
	// costs followers no latency. DefaultConfig sets it; UseLoopbackTimings,
	// whose 10 ms CommitTimeout needs no announcement, clears it.
	AnnounceCommits bool

	// NonvoterContact is how long the leader may go without an answer from
	// a non-voter before it lets raft's next heartbeat to it through; the
	// heartbeats in between are held until then (thin.go). A non-voter forgets
	// its leader after HeartbeatTimeout of silence, so this must stay well
	// under it: at most HeartbeatTimeout/2. 0 lets every heartbeat through.
	NonvoterContact time.Duration

	// NonvoterHeartbeatTimeout, when longer than HeartbeatTimeout, is the
	// heartbeat timeout this server runs while it is a non-voter: it
	// switches (raft's ReloadConfig) within HeartbeatTimeout/2 of a change
	// of its suffrage. A non-voter starts no election, so the timeout only
	// decides how long it keeps knowing its leader without hearing from
	// it. Each renewal of its lease tells the leader it runs the longer
	// timeout, and the leader then holds its heartbeats for NonvoterContact
	// scaled by the same factor (thin.go): at 50 agents the leader's
	// messages to the 45 non-voters are its largest idle cost. 0, or
	// HeartbeatTimeout, keeps raft's one timeout for every role.
	NonvoterHeartbeatTimeout time.Duration

	// RenewalSilence is how long after a non-voter's last lease renewal
	// the leader stops holding its heartbeats for the longer timeout, and
	// lets a held one go at once: a non-voter whose renewals stopped may
	// be dead, and the heartbeat's failure is the leader's first sign of
	// it (SetUnreachableHandler), as soon as it was with the shorter
	// hold. The agent sets a renewal period plus a relay's wait (the most
	// a live agent's renewals can be apart); a late renewal costs one
	// heartbeat. 0: the longer hold lasts NonvoterHeartbeatTimeout after
	// the last renewal.
	RenewalSilence time.Duration

	// LeaseRelay makes this server, while it does not lead, relay the
	// lease requests agents send it to the leader in batches (relay.go).
	// The zero value relays nothing.
	LeaseRelay LeaseRelay

	// SnapshotThreshold is how many log entries since the last snapshot make
	// raft take a new one (checked every SnapshotInterval).
	SnapshotThreshold uint64

	// SnapshotInterval is how often raft checks whether to snapshot
	// (randomised up to twice this, so servers do not snapshot together).
	SnapshotInterval time.Duration

	// TrailingLogs is how many log entries are kept after a snapshot, so a
	// slightly lagging follower can catch up from the log instead of
	// receiving a whole snapshot.
	TrailingLogs uint64

	// ApplyTimeout bounds how long Apply, ApplyEncoded and membership
	// changes wait to enqueue their entry on the leader.
	ApplyTimeout time.Duration

	// TransportTimeout is the I/O deadline of the TCP transport's RPCs
	// (snapshot installs use a longer, size-scaled deadline internally).
	// It also bounds, on the receiving side, the TLS handshake and first
	// byte of every inbound connection, and the request and the answer of a
	// ping or forwarded write; and it is Ping's deadline when its context
	// has none.
	TransportTimeout time.Duration

	// MaxPool is how many idle outbound connections the transport keeps per
	// peer.
	MaxPool int

	// SnapshotRetain is how many snapshots the file snapshot store keeps.
	// Keeping two means a corrupt newest snapshot still leaves an older one
	// to start from.
	SnapshotRetain int

	// TLS, when set, makes every raft connection, in and out, mutual TLS:
	// TLS 1.2 or later, the server side requires a client certificate and
	// verifies it against ClientCAs, the client side verifies the peer's
	// certificate against RootCAs and presents its own from Certificates.
	// Plain TCP connections are refused (their handshake fails and nothing
	// they send reaches raft). The config is cloned; MinVersion below TLS
	// 1.2 is raised to 1.2 and ClientAuth is forced to
	// RequireAndVerifyClientCert whatever it says. It must carry a
	// certificate, RootCAs and ClientCAs (normally the same CA pool), and
	// must not set InsecureSkipVerify.
	//
	// Which name a peer's certificate is checked against: ServerName if it
	// is set (one name shared by every node certificate); otherwise the
	// host part of the peer's raft address as raft knows it (its
	// AdvertiseAddr, or bound address). Those are IPs, so node certificates
	// must carry the IPs their nodes advertise as IP SANs (127.0.0.1 and
	// the bind IP; see `agent tls cert`). Any certificate from the CA is
	// accepted as a client: the CA is the trust boundary, not the node ID.
	//
	// Nil: plain TCP, for tests and single-host development only.
	TLS *tls.Config

	// ClusterSecrets returns the secrets every server of the cluster shares
	// (the agent gives its gossip keys, primary first, or its API token
	// when gossip is not encrypted). When it returns any, every connection
	// on the raft port, raft's own included, starts with a
	// challenge-response handshake on keys derived from them (ClusterKey;
	// see auth.go): a peer that cannot prove one changes nothing and is
	// told why, and a peer that answers must prove one too. This node
	// proves the first; it accepts any, so that a key can be rotated. It is
	// called for every connection, from several goroutines, and should
	// follow the secrets as they change. Nil, or no secrets: no handshake
	// (anyone who reaches the port may forward writes and speak raft,
	// unless TLS stops them).
	ClusterSecrets func() [][]byte

	// StoreFault, when set, is called before every write to raft.db, and
	// an error it returns fails the write as the disk would: fault
	// injection for tests and drills of a read-only or full disk. Leave it
	// nil in production.
	StoreFault func() error
}

// Timings measured against the environments they are meant for. The LAN
// values are raft's own defaults, which Consul and Nomad run on: a 1 s
// heartbeat timeout detects a dead leader in 1-2 s while tolerating GC pauses
// and busy hosts. Loopback has no network latency, so a third of that is
// still far above the round trip, and it makes elections (and tests) fast.
const (
	lanHeartbeatTimeout   = time.Second
	lanElectionTimeout    = time.Second
	lanLeaderLeaseTimeout = 500 * time.Millisecond
	// lanCommitTimeout is not raft's 50 ms: after each command the leader
	// announces the commit itself (announce.go), so the
	// timeout only bounds how stale a follower may be when an
	// announcement was lost, and an idle leader sends each follower an
	// empty AppendEntries every CommitTimeout to 2 × CommitTimeout. At
	// 2 s that is 16 a second to 49 followers, against 65 at 500 ms and
	// 650 at 50 ms; a follower that missed an announcement learns the
	// commit 2-4 s later, where raft's heartbeats (which carry no commit
	// index) would never tell it.
	lanCommitTimeout = 2 * time.Second
	// lanNonvoterContact: a non-voter hears from the leader every 0.4 to
	// 0.6 s (the next heartbeat after 0.4 s, raft's idle AppendEntries in
	// between) instead of every 0.1 to 0.2 s, and forgets it only after
	// 1 s of silence: two lost or late heartbeats in a row are needed for
	// that, against five before.
	lanNonvoterContact = 400 * time.Millisecond

	loopbackHeartbeatTimeout   = 300 * time.Millisecond
	loopbackElectionTimeout    = 300 * time.Millisecond
	loopbackLeaderLeaseTimeout = 150 * time.Millisecond
	loopbackCommitTimeout      = 10 * time.Millisecond
	loopbackNonvoterContact    = 120 * time.Millisecond
)

// DefaultConfig returns a configuration suited to a LAN, logging to stderr.
// ServerID and BindAddr still have to be set, and DataDir unless InMemory.
func DefaultConfig() *Config {
	return &Config{
		BindAddr:           "127.0.0.1:0",
		Logger:             hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: os.Stderr}),
		HeartbeatTimeout:   lanHeartbeatTimeout,
		ElectionTimeout:    lanElectionTimeout,
		LeaderLeaseTimeout: lanLeaderLeaseTimeout,
		CommitTimeout:      lanCommitTimeout,
		NonvoterContact:    lanNonvoterContact,
		AnnounceCommits:    true,
		SnapshotThreshold:  8192,
		SnapshotInterval:   2 * time.Minute,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		TransportTimeout:   10 * time.Second,
		MaxPool:            3,
		SnapshotRetain:     2,
	}
}

// UseLoopbackTimings switches c to timings for servers that all run on one
// host (tests, `agent dev`, `agent demo`): heartbeat and election timeouts of
// 300 ms, a 150 ms leader lease and a 10 ms commit timeout (which needs no
// announcement of commits). Do not use them
// across a real network: a busy host would see spurious elections.
func (c *Config) UseLoopbackTimings() {
	c.HeartbeatTimeout = loopbackHeartbeatTimeout
	c.ElectionTimeout = loopbackElectionTimeout
	c.LeaderLeaseTimeout = loopbackLeaderLeaseTimeout
	c.CommitTimeout = loopbackCommitTimeout
	c.NonvoterContact = loopbackNonvoterContact
	c.AnnounceCommits = false
}

// validate checks what raft.ValidateConfig does not.
func (c *Config) validate() error {
	if c.ServerID == "" {
		return errors.New("raftctl: ServerID is required")
	}
	if c.BindAddr == "" {
		return errors.New("raftctl: BindAddr is required")
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("raftctl: BindAddr %q: %w", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("raftctl: AdvertiseAddr %q: %w", c.AdvertiseAddr, err)
		}
	}
	if !c.InMemory && c.DataDir == "" {
		return errors.New("raftctl: DataDir is required unless InMemory is set")
	}
	if c.ApplyTimeout <= 0 {
		return errors.New("raftctl: ApplyTimeout must be positive")
	}
	if c.TransportTimeout <= 0 {
		return errors.New("raftctl: TransportTimeout must be positive")
	}
	if c.NonvoterContact < 0 || c.NonvoterContact > c.HeartbeatTimeout/2 {
		return fmt.Errorf("raftctl: NonvoterContact %s must be between 0 and half the HeartbeatTimeout (%s): a non-voter forgets its leader after HeartbeatTimeout of silence", c.NonvoterContact, c.HeartbeatTimeout)
	}
	if c.NonvoterHeartbeatTimeout != 0 && c.NonvoterHeartbeatTimeout < c.HeartbeatTimeout {
		return fmt.Errorf("raftctl: NonvoterHeartbeatTimeout %s must be 0 or at least the HeartbeatTimeout (%s)", c.NonvoterHeartbeatTimeout, c.HeartbeatTimeout)
	}
	if c.RenewalSilence < 0 {
		return fmt.Errorf("raftctl: RenewalSilence %s must not be negative", c.RenewalSilence)
	}
	if c.LeaseRelay.Wait < 0 || c.LeaseRelay.Wait > 0 && c.LeaseRelay.Timeout <= 0 {
		return fmt.Errorf("raftctl: LeaseRelay: Wait %s must not be negative, and Timeout %s must be positive when Wait is set", c.LeaseRelay.Wait, c.LeaseRelay.Timeout)
	}
	if c.SnapshotRetain < 1 {
		return errors.New("raftctl: SnapshotRetain must be at least 1")
	}
	if c.TLS != nil {
		if err := validateTLS(c.TLS); err != nil {
			return err
		}
	}
	return nil
}

// validateTLS refuses TLS configs that would quietly weaken mutual TLS.
func validateTLS(t *tls.Config) error {
	switch {
	case t.InsecureSkipVerify:
		return errors.New("raftctl: TLS: InsecureSkipVerify must not be set: peers' certificates are always verified")
	case len(t.Certificates) == 0 && (t.GetCertificate == nil || t.GetClientCertificate == nil):
		return errors.New("raftctl: TLS: no certificate: set Certificates to this node's certificate and key (or both GetCertificate and GetClientCertificate)")
	case t.RootCAs == nil:
		return errors.New("raftctl: TLS: RootCAs is nil (that would trust the system roots): set it to the cluster CA")
	case t.ClientCAs == nil:
		return errors.New("raftctl: TLS: ClientCAs is nil: set it to the cluster CA, client certificates are required")
	}
	return nil
}
