package gossip

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Config configures a Gossip. Start from DefaultConfig and set NodeID.
type Config struct {
	// NodeID is the Steward logical node ID (the -node-id flag). It is also
	// the memberlist node name, so it must be unique in the cluster: a
	// second process with the same ID at another address is refused as a
	// conflict (see DeadNodeReclaimTime).
	NodeID string

	// BindAddr is the IP address to listen on for gossip, UDP and TCP.
	// Default "127.0.0.1".
	BindAddr string

	// BindPort is the gossip port. 0 picks a free port; Addr reports the
	// one chosen.
	BindPort int

	// AdvertiseAddr is the IP peers should use to reach this node, when it
	// differs from BindAddr (NAT, or BindAddr 0.0.0.0). Empty: memberlist
	// derives it from BindAddr.
	AdvertiseAddr string

	// AdvertisePort is the port peers should use, when it differs from
	// BindPort. 0: the bound port.
	AdvertisePort int

	// Profile selects the probe, suspicion and gossip timings. Default
	// ProfileLAN.
	Profile Profile

	// Meta is the metadata this node starts with; change it later with
	// UpdateMeta. It must encode within memberlist's 512-byte limit.
	Meta Meta

	// SecretKey, when set, encrypts gossip with AES (16, 24 or 32 bytes, see
	// GenerateKey and ParseKey) and makes memberlist verify both incoming
	// and outgoing traffic, so a node with another key, or none, can
	// neither join nor be joined. It is the one-key shortcut for Keyring;
	// set one or the other. Nil (and no Keyring): plaintext gossip.
	SecretKey []byte

	// Keyring is the full set of gossip keys, primary first: the primary
	// encrypts everything this node sends, and every key is tried on what
	// it receives, which is what lets keys be rotated without downtime (see
	// InstallKey, UseKey, RemoveKey). Usually loaded with LoadKeyringFile.
	// Encryption and verification are as for SecretKey. Nil: see SecretKey.
	Keyring [][]byte

	// KeyringFile, when set, is where InstallKey, UseKey and RemoveKey
	// persist the keyring after every change (SaveKeyringFile: atomic,
	// mode 0600), so that a restarted agent comes back with the keys its
	// peers now use. If writing fails the change is undone and the error
	// returned, so the file and the running keyring never disagree. New
	// does not read it: load it with LoadKeyringFile into Keyring. Empty:
	// changes are not persisted.
	KeyringFile string

	// Label is memberlist's cluster label, prepended to every packet and
	// stream and checked on receipt (and bound into encryption as
	// authenticated data): nodes with different labels ignore each other
	// even with the same key, so two clusters sharing a network and a key
	// by mistake do not merge. Default "steward"; empty: no label (such a
	// node cannot talk to labelled ones either). At most 255 bytes.
	Label string

	// Logger receives this package's logs and memberlist's own log lines
	// (their [DEBUG]/[INFO]/[WARN]/[ERR] prefixes become hclog levels).
	// Nil: hclog.Default() named "gossip".
	Logger hclog.Logger

	// DeadNodeReclaimTime is how long a node must have been dead before
	// its name may be taken by a process at a different address. memberlist
	// refuses a known name at a new address unless the old entry has left
	// or has been dead this long, and its default of 0 means never: an
	// agent restarted on a new port (port 0, a new pod IP) would be
	// refused with "Conflicting address" until every peer forgot it
	// (GossipToTheDeadTime). A few seconds lets it back soon after it was
	// declared dead, while still giving a node that was declared dead by
	// mistake (paused, partitioned) a head start to refute at its own
	// address, and keeping two misconfigured processes with one node ID
	// from taking the name from each other in quick succession. Default
	// 5 s.
	DeadNodeReclaimTime time.Duration

	// EventBuffer is the capacity of the channel returned by Events. The
	// delegate side never blocks whatever this is (events queue without
	// bound in front of the channel); a bigger buffer only smooths bursts.
	// 0 means the default, 256.
	EventBuffer int

	// BroadcastTimeout bounds how long UpdateMeta waits for the metadata
	// update to be gossiped before returning an error (the update still
	// spreads afterwards). Default 5 s.
	BroadcastTimeout time.Duration

	// ReconnectInterval is how often nodes that went dead (not left) are
	// joined again, so that two sides of a healed partition, which each
	// declared the other dead, merge again (see reconnect.go). 0: the
	// profile's default (local 1 s, lan 5 s, wan 15 s). Negative: never.
	ReconnectInterval time.Duration

	// ReconnectTimeout is how long after its death a node is still joined
	// again; after that it is given up. 0: 24 h, Serf's default.
	ReconnectTimeout time.Duration

	// ReconnectSeeds, if set, is called before every reconnect round and
	// returns more peers to reconnect to, node ID to gossip address: those
	// the caller knows from elsewhere (an agent: its persisted cluster
	// state), for the case where this node never saw them die (it started
	// cut off). Peers the view holds alive or suspect are skipped. It runs
	// on the reconnect goroutine and must not call into this Gossip.
	ReconnectSeeds func() map[string]string
}

// DefaultLabel is the cluster label of DefaultConfig.
const DefaultLabel = "steward"

// DefaultConfig returns a Config with every default filled in except
// NodeID.
func DefaultConfig() *Config {
	return &Config{
		BindAddr:            "127.0.0.1",
		Profile:             ProfileLAN,
		Label:               DefaultLabel,
		DeadNodeReclaimTime: 5 * time.Second,
		EventBuffer:         256,
		BroadcastTimeout:    5 * time.Second,
	}
}

// ErrInvalidConfig is wrapped by every configuration error from New.
var ErrInvalidConfig = errors.New("gossip: invalid config")

func (c *Config) validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("%w: NodeID is empty", ErrInvalidConfig)
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("%w: BindAddr %q is not an IP address", ErrInvalidConfig, c.BindAddr)
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		return fmt.Errorf("%w: AdvertiseAddr %q is not an IP address", ErrInvalidConfig, c.AdvertiseAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return fmt.Errorf("%w: BindPort %d out of range", ErrInvalidConfig, c.BindPort)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return fmt.Errorf("%w: AdvertisePort %d out of range", ErrInvalidConfig, c.AdvertisePort)
	}
	if _, err := c.Profile.MemberlistConfig(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if c.SecretKey != nil {
		if err := validateKey(c.SecretKey); err != nil {
			return fmt.Errorf("%w: SecretKey: %v", ErrInvalidConfig, err)
		}
		if c.Keyring != nil {
			return fmt.Errorf("%w: set SecretKey or Keyring, not both", ErrInvalidConfig)
		}
	}
	if c.Keyring != nil {
		if err := validateKeys(c.Keyring); err != nil {
			return fmt.Errorf("%w: Keyring: %v", ErrInvalidConfig, err)
		}
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		return fmt.Errorf("%w: Label is %d bytes, at most %d", ErrInvalidConfig, len(c.Label), memberlist.LabelMaxSize)
	}
	if c.DeadNodeReclaimTime < 0 {
		return fmt.Errorf("%w: DeadNodeReclaimTime is negative", ErrInvalidConfig)
	}
	if c.ReconnectTimeout < 0 {
		return fmt.Errorf("%w: ReconnectTimeout is negative", ErrInvalidConfig)
	}
	if c.EventBuffer < 0 {
		return fmt.Errorf("%w: EventBuffer is negative", ErrInvalidConfig)
	}
	if _, err := EncodeMeta(c.Meta); err != nil {
		return fmt.Errorf("%w: Meta: %v", ErrInvalidConfig, err)
	}
	return nil
}
