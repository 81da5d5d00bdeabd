package hooks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// ErrCorruptAckStore is wrapped by OpenAckStore when the file exists but
// cannot be trusted. The agent must not start as if nothing had been
// acknowledged: that would skip the releases of partitions the app still
// holds. An operator who removes the file accepts exactly that.
var ErrCorruptAckStore = errors.New("hooks: acknowledged-state file is corrupt")

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

// AckChange is one change given to AckStore.Apply.
type AckChange struct {
	// Partition is the partition the change is about.
	Partition int
	// Acked is its new acknowledged state (ignored when Delete is set).
	Acked Acked
	// Delete forgets the partition (it was released) instead.
	Delete bool
}

// The store's file is a log, whatever its name (the agent calls it
// webhook-acks.json, from the time it held JSON):
//
//	header  the 16 bytes of ackLogMagic
//	record  length of payload (uint32, big endian)
//	        CRC-32C of those 4 length bytes (uint32, big endian)
//	        CRC-32C of payload (uint32, big endian)
//	        payload: op (1 set, 2 delete), partition (uvarint), and for a
//	        set: role (1 primary, 2 replica), flags (1 copying), epoch
//	        (uvarint), migration ID (uvarint length, bytes)
//
// The length has its own checksum so that a damaged length is never
// mistaken for a record cut short at the end of the file.
//
// A change appends its records and fsyncs: O(1) bytes per
// acknowledgement. Replaying the records in order gives the state. When
// the log holds more superseded records than live ones it is compacted:
// the live state is written to a temporary file as one record per
// partition, fsynced and renamed over the log, so that a crash at any
// moment leaves the old log or the new one.
const (
	ackLogMagic     = "steward-acks v2\n"
	recordHeaderLen = 12
	// maxRecordLen bounds a payload; a longer length field is damage.
	maxRecordLen = 64 << 10
	// maxMigrationIDLen keeps every record well under maxRecordLen.
	maxMigrationIDLen = 4096
	// compactSlack is how many superseded records the log may hold beyond
	// the number of live ones before it is compacted: compaction is O(live)
	// and happens at most once per live+compactSlack appends, so each
	// change costs O(1) amortised.
	compactSlack = 4096

	opSet    = 1
	opDelete = 2

	roleCodePrimary = 1
	roleCodeReplica = 2

	flagCopying = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AckStore keeps, in one file of the data dir, what the app has
// acknowledged per partition: an append-only log of changes, fsynced
// before a change returns, compacted now and then (see the format above).
// A change that returned survives a crash of the process or the machine;
// one cut short by a crash leaves a torn final record, which the next
// OpenAckStore drops (it never returned, so nothing that was promised is
// lost). It is safe for concurrent use; readers do not wait for fsyncs.
type AckStore struct {
	path string

	// writeMu serialises writers and guards the file fields below; it is
	// held across write and fsync.
	writeMu sync.Mutex
	// f is the append handle; nil until the first append (or after Close).
	f *os.File
	// records is how many records the file holds.
	records int
	// rewrite is set when the file must be written afresh from memory
	// before anything is appended: it does not exist yet, it ends in a torn
	// record, or a write failed and its tail cannot be trusted.
	rewrite bool

	// mu guards acked. Writers hold writeMu too, so they may read acked
	// without mu.
	mu    sync.RWMutex
	acked map[int]Acked
}

// OpenAckStore loads the store at path; a missing file is an empty store
// (the file is created, mode 0600, by the first change). The file is a
// binary log whatever its name: the agent's "webhook-acks.json" is a name
// kept from an earlier JSON format, which this version refuses as corrupt. A file that is not such a
// log, holds impossible entries or is damaged anywhere but in its final
// record is an error wrapping ErrCorruptAckStore, never an empty store.
func OpenAckStore(path string) (*AckStore, error) {
	s := &AckStore{path: path, acked: map[int]Acked{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		s.rewrite = true
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hooks: read %s: %w", path, err)
	}
	records, torn, err := replayAckLog(data, s.acked)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptAckStore, path, err)
	}
	s.records = records
	// Records appended after a torn one would never be read back: the first
	// change rewrites the file instead.
	s.rewrite = torn
	return s, nil
}

// Path is the file the store writes.
func (s *AckStore) Path() string { return s.path }

// Get returns what the app acknowledged for partition p.
func (s *AckStore) Get(p int) (Acked, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.acked[p]
	return a, ok
}

// Len is how many partitions have an acknowledged entry.
func (s *AckStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.acked)
}

// Snapshot returns a copy of every acknowledged entry.
func (s *AckStore) Snapshot() map[int]Acked {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[int]Acked, len(s.acked))
	for p, a := range s.acked {
		out[p] = a
	}
	return out
}

// Set records a and persists it before returning; on error nothing changed.
func (s *AckStore) Set(p int, a Acked) error {
	return s.Apply([]AckChange{{Partition: p, Acked: a}})
}

// Delete forgets partition p (it was released) and persists that.
func (s *AckStore) Delete(p int) error {
	return s.Apply([]AckChange{{Partition: p, Delete: true}})
}

// Apply records changes, in order, with one write and one fsync: the batch
// path for acknowledgements that arrive together (group commit). It
// returns once they are durable; on error none of them is in the store (a
// crash during Apply may leave any prefix of them on disk, each of which
// was acknowledged all the same).
func (s *AckStore) Apply(changes []AckChange) error {
	if len(changes) == 0 {
		return nil
	}
	for _, c := range changes {
		if err := validateChange(c); err != nil {
			return err
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.rewrite || s.records-len(s.acked) > len(s.acked)+compactSlack {
		next := make(map[int]Acked, len(s.acked)+len(changes))
		for p, a := range s.acked {
			next[p] = a
		}
		applyChanges(next, changes)
		if err := s.rewriteLocked(next); err != nil {
			return err
		}
		s.mu.Lock()
		s.acked = next
		s.mu.Unlock()
		return nil
	}
	if err := s.appendLocked(changes); err != nil {
		return err
	}
	s.mu.Lock()
	applyChanges(s.acked, changes)
	s.mu.Unlock()
	return nil
}

// Close releases the file handle the store keeps for appending. It is
// safe to call more than once; a later change opens the file again.
func (s *AckStore) Close() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func validateChange(c AckChange) error {
	if c.Partition < 0 || c.Partition > math.MaxInt32 {
		return fmt.Errorf("hooks: ack store: partition %d out of range", c.Partition)
	}
	if c.Delete {
		return nil
	}
	if c.Acked.Role != RolePrimary && c.Acked.Role != RoleReplica {
		return fmt.Errorf("hooks: ack store: partition %d: role %q is neither primary nor replica", c.Partition, c.Acked.Role)
	}
	if len(c.Acked.MigrationID) > maxMigrationIDLen {
		return fmt.Errorf("hooks: ack store: partition %d: migration ID of %d bytes", c.Partition, len(c.Acked.MigrationID))
	}
	return nil
}

func applyChanges(m map[int]Acked, changes []AckChange) {
	for _, c := range changes {
		if c.Delete {
			delete(m, c.Partition)
		} else {
			m[c.Partition] = c.Acked
		}
	}
}

// appendLocked appends one record per change and fsyncs.
func (s *AckStore) appendLocked(changes []AckChange) error {
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("hooks: write %s: %w", s.path, err)
		}
		s.f = f
	}
	var buf []byte
	for _, c := range changes {
		buf = appendRecord(buf, c)
	}
	_, err := s.f.Write(buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// The tail may hold part of buf, and after a failed fsync the page
		// cache is no evidence of what is on disk: the next change writes the
		// whole file again from memory.
		s.f.Close()
		s.f = nil
		s.rewrite = true
		return fmt.Errorf("hooks: write %s: %w", s.path, err)
	}
	s.records += len(changes)
	return nil
}

// rewriteLocked replaces the file with one holding m, atomically: a
// temporary file in the same directory, fsync, rename, fsync of the
// directory.
func (s *AckStore) rewriteLocked(m map[int]Acked) error {
	keys := make([]int, 0, len(m))
	for p := range m {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	buf := make([]byte, 0, len(ackLogMagic)+len(keys)*(recordHeaderLen+12))
	buf = append(buf, ackLogMagic...)
	for _, p := range keys {
		buf = appendRecord(buf, AckChange{Partition: p, Acked: m[p]})
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
	if _, err := tmp.Write(buf); err != nil {
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
	// The old handle points at the replaced file.
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	// The rename is durable only once the directory entry is; until then
	// the file on disk may still be the old one, so write it again next
	// time if this fails.
	if err := syncDir(dir); err != nil {
		s.rewrite = true
		return fmt.Errorf("hooks: write %s: sync directory: %w", s.path, err)
	}
	s.records = len(keys)
	s.rewrite = false
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// appendRecord appends the record of c to buf.
func appendRecord(buf []byte, c AckChange) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, recordHeaderLen)...)
	if c.Delete {
		buf = append(buf, opDelete)
		buf = binary.AppendUvarint(buf, uint64(c.Partition))
	} else {
		buf = append(buf, opSet)
		buf = binary.AppendUvarint(buf, uint64(c.Partition))
		role := byte(roleCodeReplica)
		if c.Acked.Role == RolePrimary {
			role = roleCodePrimary
		}
		var flags byte
		if c.Acked.Copying {
			flags |= flagCopying
		}
		buf = append(buf, role, flags)
		buf = binary.AppendUvarint(buf, c.Acked.Epoch)
		buf = binary.AppendUvarint(buf, uint64(len(c.Acked.MigrationID)))
		buf = append(buf, c.Acked.MigrationID...)
	}
	payload := buf[start+recordHeaderLen:]
	binary.BigEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start:start+4], castagnoli))
	binary.BigEndian.PutUint32(buf[start+8:], crc32.Checksum(payload, castagnoli))
	return buf
}

// replayAckLog applies the records of data to into. torn reports a final
// record cut short by a crash (ignored); damage anywhere else is an error.
// A crash mid-append leaves a prefix of the record, or the file extended
// with zeros where the rest should be: so a record that runs past the end
// of the file (with a length that checks out), a bad payload checksum on
// the very last record, or a tail of zeros is torn. Anything else is
// damage: a length that does not check out with bytes after it, a bad
// payload checksum with more records after it, a record that checks out
// but does not decode. The last record cannot be told from a torn one: if
// it is damaged, it is dropped like one.
func replayAckLog(data []byte, into map[int]Acked) (records int, torn bool, err error) {
	if !bytes.HasPrefix(data, []byte(ackLogMagic)) {
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			return 0, false, errors.New("a JSON file of an earlier format, not an acknowledgement log")
		}
		return 0, false, errors.New("not an acknowledgement log (bad header)")
	}
	off := len(ackLogMagic)
	for off < len(data) {
		rest := data[off:]
		if len(rest) < recordHeaderLen {
			return records, true, nil
		}
		n := binary.BigEndian.Uint32(rest)
		lenSum := binary.BigEndian.Uint32(rest[4:])
		sum := binary.BigEndian.Uint32(rest[8:])
		if crc32.Checksum(rest[:4], castagnoli) != lenSum || n == 0 || n > maxRecordLen {
			if allZero(rest) {
				return records, true, nil
			}
			return records, false, fmt.Errorf("record at offset %d: damaged header", off)
		}
		end := recordHeaderLen + int(n)
		if end > len(rest) {
			return records, true, nil
		}
		payload := rest[recordHeaderLen:end]
		if crc32.Checksum(payload, castagnoli) != sum {
			if end == len(rest) {
				return records, true, nil
			}
			return records, false, fmt.Errorf("record at offset %d: checksum mismatch", off)
		}
		c, err := decodeRecord(payload)
		if err != nil {
			return records, false, fmt.Errorf("record at offset %d: %v", off, err)
		}
		if c.Delete {
			delete(into, c.Partition)
		} else {
			into[c.Partition] = c.Acked
		}
		records++
		off += end
	}
	return records, false, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// decodeRecord parses one payload whose checksum is good: anything odd in
// it was written so, and is damage.
func decodeRecord(payload []byte) (AckChange, error) {
	var c AckChange
	op := payload[0]
	rest := payload[1:]
	p, k := binary.Uvarint(rest)
	if k <= 0 || p > math.MaxInt32 {
		return c, errors.New("bad partition")
	}
	rest = rest[k:]
	c.Partition = int(p)
	switch op {
	case opDelete:
		c.Delete = true
	case opSet:
		if len(rest) < 2 {
			return c, errors.New("short set record")
		}
		switch rest[0] {
		case roleCodePrimary:
			c.Acked.Role = RolePrimary
		case roleCodeReplica:
			c.Acked.Role = RoleReplica
		default:
			return c, fmt.Errorf("partition %d has role code %d", p, rest[0])
		}
		flags := rest[1]
		if flags&^flagCopying != 0 {
			return c, fmt.Errorf("partition %d has unknown flags %#x", p, flags)
		}
		c.Acked.Copying = flags&flagCopying != 0
		rest = rest[2:]
		epoch, k := binary.Uvarint(rest)
		if k <= 0 {
			return c, errors.New("bad epoch")
		}
		rest = rest[k:]
		idLen, k := binary.Uvarint(rest)
		if k <= 0 || idLen > uint64(len(rest)-k) || idLen > maxMigrationIDLen {
			return c, errors.New("bad migration ID")
		}
		rest = rest[k:]
		c.Acked.Epoch = epoch
		c.Acked.MigrationID = string(rest[:idLen])
		rest = rest[idLen:]
	default:
		return c, fmt.Errorf("unknown operation %d", op)
	}
	if len(rest) != 0 {
		return c, fmt.Errorf("%d trailing bytes", len(rest))
	}
	return c, nil
}
