package raftctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/steward-dev/steward/failover"
)

// Log entries and snapshots start with one byte naming their encoding, so a
// future format can be introduced while old entries stay readable: a server
// that meets a version it does not know fails that entry with a clear error
// instead of misreading it.
const (
	// encodingJSON is version 1: the rest is a JSON document.
	encodingJSON byte = 1
)

// maxSnapshotSize bounds what Restore reads. The largest legal cluster
// (failover.MaxPartitions partitions with failover.MaxReplicationFactor
// holders) is a few tens of megabytes of JSON; anything far beyond that is
// corruption, and reading it whole would only exhaust memory.
const maxSnapshotSize = 512 << 20

var (
	// ErrEmptyCommand is returned when decoding an empty log entry.
	ErrEmptyCommand = errors.New("raftctl: empty command")
	// ErrUnknownEncoding is returned for a log entry or snapshot whose
	// version byte this build does not know (written by a newer Steward, or
	// not Steward data at all).
	ErrUnknownEncoding = errors.New("raftctl: unknown encoding version")
	// ErrCorruptSnapshot is returned by Restore for a snapshot that cannot be
	// decoded or does not describe a valid cluster.
	ErrCorruptSnapshot = errors.New("raftctl: corrupt snapshot")
)

// EncodeCommand encodes cmd as a log entry: the version byte, then JSON.
func EncodeCommand(cmd failover.Command) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(encodingJSON)
	if err := json.NewEncoder(&buf).Encode(cmd); err != nil {
		return nil, fmt.Errorf("raftctl: encode command: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeCommand decodes a log entry written by EncodeCommand. Any input,
// however malformed, gives a command or an error, never a panic.
func DecodeCommand(data []byte) (failover.Command, error) {
	if len(data) == 0 {
		return failover.Command{}, ErrEmptyCommand
	}
	if data[0] != encodingJSON {
		return failover.Command{}, fmt.Errorf("%w %d in command", ErrUnknownEncoding, data[0])
	}
	var cmd failover.Command
	if err := json.Unmarshal(data[1:], &cmd); err != nil {
		return failover.Command{}, fmt.Errorf("raftctl: decode command: %w", err)
	}
	if cmd.Kind == "" {
		return failover.Command{}, errors.New("raftctl: decode command: no kind")
	}
	return cmd, nil
}

// snapshotV1 is the JSON body of a version 1 snapshot.
type snapshotV1 struct {
	// AppliedIndex is the index of the last log entry the FSM had applied
	// when the snapshot was taken; Restore resumes the FSM's count from it.
	AppliedIndex uint64 `json:"applied_index"`
	// Cluster is the whole replicated state.
	Cluster *failover.Cluster `json:"cluster"`
}

// encodeSnapshot writes the version byte and the JSON of c to w.
func encodeSnapshot(w io.Writer, c *failover.Cluster, applied uint64) error {
	if _, err := w.Write([]byte{encodingJSON}); err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(snapshotV1{AppliedIndex: applied, Cluster: c})
}

// decodeSnapshot reads a whole snapshot from r and checks it. It returns the
// cluster only if everything decoded and the cluster is valid, so that the
// caller can swap it in all at once.
func decodeSnapshot(r io.Reader) (*failover.Cluster, uint64, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSnapshotSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: read: %w", ErrCorruptSnapshot, err)
	}
	if len(data) > maxSnapshotSize {
		return nil, 0, fmt.Errorf("%w: larger than %d bytes", ErrCorruptSnapshot, maxSnapshotSize)
	}
	if len(data) == 0 {
		return nil, 0, fmt.Errorf("%w: empty", ErrCorruptSnapshot)
	}
	if data[0] != encodingJSON {
		return nil, 0, fmt.Errorf("%w: %w %d", ErrCorruptSnapshot, ErrUnknownEncoding, data[0])
	}
	dec := json.NewDecoder(bytes.NewReader(data[1:]))
	dec.DisallowUnknownFields()
	var snap snapshotV1
	if err := dec.Decode(&snap); err != nil {
		return nil, 0, fmt.Errorf("%w: decode: %w", ErrCorruptSnapshot, err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return nil, 0, fmt.Errorf("%w: trailing data after the cluster", ErrCorruptSnapshot)
	}
	if snap.Cluster == nil {
		return nil, 0, fmt.Errorf("%w: no cluster", ErrCorruptSnapshot)
	}
	if snap.Cluster.Members == nil {
		snap.Cluster.Members = map[string]failover.Member{}
	}
	if err := snap.Cluster.Validate(); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrCorruptSnapshot, err)
	}
	return snap.Cluster, snap.AppliedIndex, nil
}
