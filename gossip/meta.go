package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Meta is what a Steward agent tells its peers about itself through gossip
// node metadata. It travels in every alive message, so it is kept small.
type Meta struct {
	// RaftID is the node's Raft server ID.
	RaftID string
	// RaftAddr is the host:port of the node's Raft transport.
	RaftAddr string
	// APIAddr is the host:port of the agent's HTTP API.
	APIAddr string
	// AppAddr is the data address of the co-located app, given to peers that
	// copy partitions from it.
	AppAddr string
	// Zone is the failure domain used for replica spreading.
	Zone string
	// Version is the agent's build version.
	Version string
	// Weight is the node's relative capacity.
	Weight int
	// AppUnhealthy is set when the agent's own app fails its health probes.
	AppUnhealthy bool
	// Leaving is set by Gossip.Leave just before the gossip leave, so that
	// peers report the node as left rather than dead.
	Leaving bool
	// Returning is set by an agent that runs again after a planned restart
	// (its member is restarting in the cluster state), until the leader has
	// taken it back: it tells the new process from the one that went away,
	// which never sets it.
	Returning bool
	// Suspects are the nodes this node's own memberlist probes currently
	// suspect (at most MaxSuspects). Gossip tells only the prober about a
	// failed probe; publishing it here lets every agent, the leader above
	// all, start confirming at the first suspicion anywhere instead of
	// waiting for its own probe round to reach the node.
	Suspects []string
	// Boot is drawn at random when the agent process starts (New sets it
	// when it is 0): it makes a restarted agent's metadata differ from its
	// previous life's. memberlist tells its EventDelegate about a node it
	// held suspect that refutes with a new incarnation only when the
	// metadata changed (NotifyUpdate); with the same metadata it says
	// nothing, and peers here held a restarted agent suspect until one of
	// their own probes reached it: 5 s apart on wan, so a restart after a
	// SIGKILL took 6 to 22 s to be seen alive.
	Boot uint64
}

// MaxSuspects bounds Meta.Suspects so that the metadata stays within
// memberlist's limit whatever the node IDs.
const MaxSuspects = 4

// Encoding, version 1:
//
//	byte    format version (1)
//	6 ×     string: 1-byte length, then the bytes (RaftID, RaftAddr,
//	        APIAddr, AppAddr, Zone, Version)
//	varint  Weight (zig-zag, encoding/binary)
//	byte    flags: bit 0 AppUnhealthy, bit 1 Leaving, bit 2 Returning
//	then, optional: byte suspect count, that many strings (Suspects);
//	8 bytes big-endian Boot (present only after the suspects, whose
//	count is then written even when 0)
//
// A later version 1 writer may append fields; readers ignore trailing bytes
// and unknown flag bits, so agents of mixed versions can share a cluster.
// An incompatible change takes a new format version.
const metaFormatV1 = 1

// MaxMetaFieldLen is the most bytes one string field of Meta may hold.
const MaxMetaFieldLen = 255

const (
	flagAppUnhealthy = 1 << 0
	flagLeaving      = 1 << 1
	flagReturning    = 1 << 2
)

var (
	// ErrMetaTooLong is wrapped when a field or the whole encoding exceeds
	// its limit.
	ErrMetaTooLong = errors.New("gossip: metadata too long")
	// ErrMetaMalformed is wrapped by every DecodeMeta error.
	ErrMetaMalformed = errors.New("gossip: malformed metadata")
)

type metaField struct {
	name  string
	value string
}

func (m Meta) stringFields() []metaField {
	return []metaField{
		{"RaftID", m.RaftID},
		{"RaftAddr", m.RaftAddr},
		{"APIAddr", m.APIAddr},
		{"AppAddr", m.AppAddr},
		{"Zone", m.Zone},
		{"Version", m.Version},
	}
}

// EncodeMeta encodes m in the compact versioned format. The result is at
// most memberlist.MetaMaxSize (512) bytes; a field longer than
// MaxMetaFieldLen, or a total above the limit, gives an error that names the
// field to shorten.
func EncodeMeta(m Meta) ([]byte, error) {
	fields := m.stringFields()
	size := 1 + binary.MaxVarintLen64 + 1
	longest := fields[0]
	for _, f := range fields {
		if len(f.value) > MaxMetaFieldLen {
			return nil, fmt.Errorf("%w: field %s is %d bytes, at most %d", ErrMetaTooLong, f.name, len(f.value), MaxMetaFieldLen)
		}
		if len(f.value) > len(longest.value) {
			longest = f
		}
		size += 1 + len(f.value)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, metaFormatV1)
	for _, f := range fields {
		buf = append(buf, byte(len(f.value)))
		buf = append(buf, f.value...)
	}
	buf = binary.AppendVarint(buf, int64(m.Weight))
	var flags byte
	if m.AppUnhealthy {
		flags |= flagAppUnhealthy
	}
	if m.Leaving {
		flags |= flagLeaving
	}
	if m.Returning {
		flags |= flagReturning
	}
	buf = append(buf, flags)
	if len(m.Suspects) > MaxSuspects {
		return nil, fmt.Errorf("%w: %d suspects, at most %d", ErrMetaTooLong, len(m.Suspects), MaxSuspects)
	}
	if len(m.Suspects) > 0 || m.Boot != 0 {
		// Appended after the flags: a decoder that predates the field
		// reads the rest and ignores this tail.
		buf = append(buf, byte(len(m.Suspects)))
		for _, id := range m.Suspects {
			if len(id) > MaxMetaFieldLen {
				return nil, fmt.Errorf("%w: a suspect ID is %d bytes, at most %d", ErrMetaTooLong, len(id), MaxMetaFieldLen)
			}
			buf = append(buf, byte(len(id)))
			buf = append(buf, id...)
		}
	}
	if m.Boot != 0 {
		// After the suspects: a decoder that knows them but not Boot
		// ignores it like any tail.
		buf = binary.BigEndian.AppendUint64(buf, m.Boot)
	}
	if len(buf) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: encoded metadata is %d bytes, memberlist allows %d; shorten the longest field, %s (%d bytes)",
			ErrMetaTooLong, len(buf), memberlist.MetaMaxSize, longest.name, len(longest.value))
	}
	return buf, nil
}

// DecodeMeta decodes what EncodeMeta produced. It never panics: any input
// that is not a valid encoding gives an error wrapping ErrMetaMalformed.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, fmt.Errorf("%w: empty", ErrMetaMalformed)
	}
	if b[0] != metaFormatV1 {
		return m, fmt.Errorf("%w: unsupported format version %d", ErrMetaMalformed, b[0])
	}
	rest := b[1:]
	targets := []struct {
		name string
		dst  *string
	}{
		{"RaftID", &m.RaftID},
		{"RaftAddr", &m.RaftAddr},
		{"APIAddr", &m.APIAddr},
		{"AppAddr", &m.AppAddr},
		{"Zone", &m.Zone},
		{"Version", &m.Version},
	}
	for _, t := range targets {
		if len(rest) < 1 {
			return Meta{}, fmt.Errorf("%w: truncated before %s", ErrMetaMalformed, t.name)
		}
		n := int(rest[0])
		rest = rest[1:]
		if len(rest) < n {
			return Meta{}, fmt.Errorf("%w: %s claims %d bytes, %d left", ErrMetaMalformed, t.name, n, len(rest))
		}
		*t.dst = string(rest[:n])
		rest = rest[n:]
	}
	w, n := binary.Varint(rest)
	if n <= 0 {
		return Meta{}, fmt.Errorf("%w: bad Weight varint", ErrMetaMalformed)
	}
	if int64(int(w)) != w {
		return Meta{}, fmt.Errorf("%w: Weight %d out of range", ErrMetaMalformed, w)
	}
	m.Weight = int(w)
	rest = rest[n:]
	if len(rest) < 1 {
		return Meta{}, fmt.Errorf("%w: truncated before flags", ErrMetaMalformed)
	}
	m.AppUnhealthy = rest[0]&flagAppUnhealthy != 0
	m.Leaving = rest[0]&flagLeaving != 0
	m.Returning = rest[0]&flagReturning != 0
	m.Suspects, m.Boot = decodeTail(rest[1:])
	return m, nil
}

// decodeTail reads the suspects list that follows the flags, and Boot
// after it. A tail that is not well formed is some later writer's addition
// and is ignored, as trailing bytes always were: the suspects are a hint,
// and Boot only makes a restart visible, neither worth refusing a member's
// metadata over.
func decodeTail(rest []byte) (suspects []string, boot uint64) {
	if len(rest) == 0 {
		return nil, 0
	}
	count := int(rest[0])
	rest = rest[1:]
	if count > MaxSuspects {
		return nil, 0
	}
	for i := 0; i < count; i++ {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, 0
		}
		n := int(rest[0])
		suspects = append(suspects, string(rest[1:1+n]))
		rest = rest[1+n:]
	}
	if len(rest) >= 8 {
		boot = binary.BigEndian.Uint64(rest)
	}
	return suspects, boot
}
