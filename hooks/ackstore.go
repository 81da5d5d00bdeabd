package hooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
)

// ErrCorruptAckStore is wrapped by OpenAckStore when the file exists but
// cannot be trusted. The agent must not start as if nothing had been
// acknowledged: that would skip the releases of partitions the app still
// holds. An operator who removes the file accepts exactly that.
var ErrCorruptAckStore = errors.New("hooks: acknowledged-state file is corrupt")

// ackStoreVersion is the file format's version.
const ackStoreVersion = 1

// Acked is what the app acknowledged for one partition.
type Acked struct {
	// Role is RolePrimary or RoleReplica (a released partition has no entry).
	Role string `json:"role"`
	// Epoch is the epoch of the acknowledged event.
	Epoch uint64 `json:"epoch"`
	// MigrationID is the copy the acknowledged assign asked for, if any.
	MigrationID string `json:"migration_id,omitempty"`
	// Copying is set when the app answered 202 to that assign and has not
	// yet reported the copy complete or failed.
	Copying bool `json:"copying,omitempty"`
}

type ackFile struct {
	Version    int              `json:"version"`
	Partitions map[string]Acked `json:"partitions"`
}

// AckStore keeps, in one file of the data dir, what the app has
// acknowledged per partition. Every change rewrites the file atomically
// (temporary file, fsync, rename, fsync of the directory), so that a crash
// at any moment leaves either the old or the new state. It is safe for
// concurrent use.
type AckStore struct {
	path  string
	mu    sync.Mutex
	acked map[int]Acked
}

// OpenAckStore loads the store at path; a missing file is an empty store.
// A file that does not parse or holds impossible entries is an error
// wrapping ErrCorruptAckStore, never an empty store.
func OpenAckStore(path string) (*AckStore, error) {
	s := &AckStore{path: path, acked: map[int]Acked{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hooks: read %s: %w", path, err)
	}
	var f ackFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptAckStore, path, err)
	}
	if f.Version != ackStoreVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrCorruptAckStore, path, f.Version, ackStoreVersion)
	}
	for k, a := range f.Partitions {
		p, err := strconv.Atoi(k)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%w: %s: partition key %q", ErrCorruptAckStore, path, k)
		}
		if a.Role != RolePrimary && a.Role != RoleReplica {
			return nil, fmt.Errorf("%w: %s: partition %d has role %q", ErrCorruptAckStore, path, p, a.Role)
		}
		s.acked[p] = a
	}
	return s, nil
}

// Path is the file the store writes.
func (s *AckStore) Path() string { return s.path }

// Get returns what the app acknowledged for partition p.
func (s *AckStore) Get(p int) (Acked, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.acked[p]
	return a, ok
}

// Snapshot returns a copy of every acknowledged entry.
func (s *AckStore) Snapshot() map[int]Acked {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]Acked, len(s.acked))
	for p, a := range s.acked {
		out[p] = a
	}
	return out
}

// Set records a and persists it before returning; on error nothing changed.
func (s *AckStore) Set(p int, a Acked) error {
	return s.update(func(m map[int]Acked) { m[p] = a })
}

// Delete forgets partition p (it was released) and persists that.
func (s *AckStore) Delete(p int) error {
	return s.update(func(m map[int]Acked) { delete(m, p) })
}

func (s *AckStore) update(change func(map[int]Acked)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[int]Acked, len(s.acked)+1)
	for p, a := range s.acked {
		next[p] = a
	}
	change(next)
	if err := s.write(next); err != nil {
		return err
	}
	s.acked = next
	return nil
}

func (s *AckStore) write(m map[int]Acked) error {
	f := ackFile{Version: ackStoreVersion, Partitions: make(map[string]Acked, len(m))}
	keys := make([]int, 0, len(m))
	for p := range m {
		keys = append(keys, p)
	}
	sort.Ints(keys)
	for _, p := range keys {
		f.Partitions[strconv.Itoa(p)] = m[p]
	}
	data, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("hooks: write %s: %w", s.path, err)
	}
	tmpName := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmpName)
		return fmt.Errorf("hooks: write %s: %w", s.path, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("hooks: write %s: %w", s.path, err)
	}
	if err := os.Rename(tmpName, s.path); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("hooks: write %s: %w", s.path, err)
	}
	// The rename is durable only once the directory entry is.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
