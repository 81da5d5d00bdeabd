package hooks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// logOf builds the bytes of a log holding changes, in order.
func logOf(changes ...AckChange) []byte {
	buf := []byte(ackLogMagic)
	for _, c := range changes {
		buf = appendRecord(buf, c)
	}
	return buf
}

func set(p int, role string, epoch uint64) AckChange {
	return AckChange{Partition: p, Acked: Acked{Role: role, Epoch: epoch}}
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook-acks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustOpen(t *testing.T, path string) *AckStore {
	t.Helper()
	s, err := OpenAckStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAckStoreRefusesACorruptFile(t *testing.T) {
	three := logOf(set(1, RolePrimary, 1), set(2, RoleReplica, 1), set(3, RoleReplica, 2))
	second := len(logOf(set(1, RolePrimary, 1)))
	damaged := func(at int) []byte {
		b := append([]byte(nil), three...)
		b[at] ^= 0x40
		return b
	}
	// A record whose checksums are right but whose content is impossible:
	// written so, not torn.
	badRole := logOf(set(1, RolePrimary, 1))
	badRole[len(ackLogMagic)+recordHeaderLen+2] = 9 // role code
	binary.BigEndian.PutUint32(badRole[len(ackLogMagic)+8:], crc32c(badRole[len(ackLogMagic)+recordHeaderLen:]))

	cases := map[string][]byte{
		"empty":                      {},
		"JSON of the earlier format": []byte(`{"version":1,"partitions":{"3":{"role":"primary","epoch":1}}}`),
		"another format version":     []byte("steward-acks v9\n"),
		"header cut short":           []byte(ackLogMagic[:10]),
		"damaged first length":       damaged(len(ackLogMagic) + 2),
		"damaged first payload":      damaged(len(ackLogMagic) + recordHeaderLen + 1),
		"damaged second checksum":    damaged(second + 9),
		"impossible role":            badRole,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, content)
			_, err := OpenAckStore(path)
			if !errors.Is(err, ErrCorruptAckStore) || !strings.Contains(err.Error(), path) {
				t.Fatalf("OpenAckStore = %v, want ErrCorruptAckStore naming the file", err)
			}
		})
	}
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

func TestAckStoreIgnoresATornFinalRecord(t *testing.T) {
	kept := []AckChange{set(1, RolePrimary, 4), set(2, RoleReplica, 4)}
	last := AckChange{Partition: 3, Acked: Acked{Role: RoleReplica, Epoch: 5, MigrationID: "m7", Copying: true}}
	whole := logOf(append(kept, last)...)
	lastStart := len(logOf(kept...))
	want := map[int]Acked{1: kept[0].Acked, 2: kept[1].Acked}

	cases := map[string][]byte{
		"cut inside the header":  whole[:lastStart+5],
		"cut inside the payload": whole[:len(whole)-3],
		// The file grew but the data never reached the disk.
		"zeros where the record should be": append(append([]byte(nil), whole[:lastStart]...), make([]byte, len(whole)-lastStart)...),
		"garbage in the last payload": func() []byte {
			b := append([]byte(nil), whole...)
			b[len(b)-2] ^= 0xff
			return b
		}(),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, content)
			s := mustOpen(t, path)
			if got := s.Snapshot(); !reflect.DeepEqual(got, want) {
				t.Fatalf("opened %+v, want %+v (everything before the torn record)", got, want)
			}
			// Changes after the torn record must be readable next time: the
			// store does not append after garbage.
			if err := s.Set(9, Acked{Role: RolePrimary, Epoch: 6}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			again := mustOpen(t, path)
			want9 := map[int]Acked{1: kept[0].Acked, 2: kept[1].Acked, 9: {Role: RolePrimary, Epoch: 6}}
			if got := again.Snapshot(); !reflect.DeepEqual(got, want9) {
				t.Fatalf("reopened %+v, want %+v", got, want9)
			}
			if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("after the rewrite: %v, %v", info, err)
			}
		})
	}
}

// Any prefix of a log (a crash can cut it anywhere) opens as the state after
// some prefix of its changes: never an error, never a change that was not
// made, never an older change without the ones before it.
func TestAckStoreAnyCutOfTheLogIsAPrefixOfItsChanges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		changes := rapid.SliceOfN(changeGen(), 1, 30).Draw(t, "changes")
		data := logOf(changes...)
		states := []map[int]Acked{{}}
		model := map[int]Acked{}
		for _, c := range changes {
			applyChanges(model, []AckChange{c})
			states = append(states, cloneAcked(model))
		}
		for cut := len(ackLogMagic); cut <= len(data); cut++ {
			got := map[int]Acked{}
			n, _, err := replayAckLog(data[:cut], got)
			if err != nil {
				t.Fatalf("cut at %d of %d: %v", cut, len(data), err)
			}
			if !reflect.DeepEqual(got, states[n]) {
				t.Fatalf("cut at %d: %+v after %d records, want %+v", cut, got, n, states[n])
			}
		}
		if n, torn, _ := replayAckLog(data, map[int]Acked{}); n != len(changes) || torn {
			t.Fatalf("whole log: %d records, torn %v; want %d", n, torn, len(changes))
		}
	})
}

// Damage to any byte before the last record is reported, never read as a
// shorter log.
func TestAckStoreDetectsDamageBeforeTheLastRecord(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		changes := rapid.SliceOfN(changeGen(), 2, 12).Draw(t, "changes")
		data := logOf(changes...)
		lastStart := len(logOf(changes[:len(changes)-1]...))
		at := rapid.IntRange(0, lastStart-1).Draw(t, "at")
		flip := rapid.ByteRange(1, 255).Draw(t, "flip")
		b := append([]byte(nil), data...)
		b[at] ^= flip
		if _, _, err := replayAckLog(b, map[int]Acked{}); err == nil {
			t.Fatalf("byte %d ^ %#x of %d (last record at %d) went unnoticed", at, flip, len(b), lastStart)
		}
	})
}

func changeGen() *rapid.Generator[AckChange] {
	return rapid.Custom(func(t *rapid.T) AckChange {
		p := rapid.IntRange(0, 70000).Draw(t, "partition")
		if rapid.IntRange(0, 4).Draw(t, "op") == 0 {
			return AckChange{Partition: p, Delete: true}
		}
		a := Acked{
			Role:  rapid.SampledFrom([]string{RolePrimary, RoleReplica}).Draw(t, "role"),
			Epoch: rapid.Uint64().Draw(t, "epoch"),
		}
		if rapid.Bool().Draw(t, "copy") {
			a.MigrationID = rapid.StringMatching(`m-[a-z0-9]{1,20}`).Draw(t, "migration")
			a.Copying = rapid.Bool().Draw(t, "copying")
		}
		return AckChange{Partition: p, Acked: a}
	})
}

func cloneAcked(m map[int]Acked) map[int]Acked {
	out := make(map[int]Acked, len(m))
	for p, a := range m {
		out[p] = a
	}
	return out
}

func TestAckStoreCompactsItsLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "webhook-acks.json")
	s := mustOpen(t, path)
	const live = 100
	model := map[int]Acked{}
	// Many more changes than live partitions: the log must not keep them all.
	var largest int64
	for round := range 120 {
		batch := make([]AckChange, 0, 100)
		for p := range live {
			c := set(p, RoleReplica, uint64(round+1))
			if (p+round)%7 == 0 {
				c = AckChange{Partition: p, Delete: true}
			}
			batch = append(batch, c)
		}
		if err := s.Apply(batch); err != nil {
			t.Fatal(err)
		}
		applyChanges(model, batch)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, info.Size())
	}
	// 12 000 records written; a compacted log holds at most live +
	// compactSlack + one batch of them.
	maxRecord := int64(len(appendRecord(nil, set(live, RoleReplica, 1<<20))))
	if limit := int64(len(ackLogMagic)) + (live+compactSlack+live+100)*maxRecord; largest > limit {
		t.Fatalf("the log grew to %d bytes, more than %d: never compacted", largest, limit)
	}
	if got := s.Snapshot(); !reflect.DeepEqual(got, model) {
		t.Fatalf("in memory %d entries, want %d", len(got), len(model))
	}
	s.Close()
	if got := mustOpen(t, path).Snapshot(); !reflect.DeepEqual(got, model) {
		t.Fatalf("reopened %d entries, want %d", len(got), len(model))
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v %v", entries, err)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after compaction, want 0600", info.Mode().Perm())
	}
}

func TestAckStoreApplyRefusesAnImpossibleChangeAndKeepsNone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acks")
	s := mustOpen(t, path)
	if err := s.Set(1, Acked{Role: RolePrimary, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for name, bad := range map[string]AckChange{
		"no role":            {Partition: 2, Acked: Acked{Epoch: 1}},
		"negative partition": set(-1, RolePrimary, 1),
		"huge migration ID":  {Partition: 2, Acked: Acked{Role: RoleReplica, MigrationID: strings.Repeat("m", maxMigrationIDLen+1)}},
	} {
		if err := s.Apply([]AckChange{set(5, RoleReplica, 1), bad}); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
	if _, ok := s.Get(5); ok {
		t.Fatal("part of a refused batch was applied")
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("a refused batch changed the file")
	}
}

// After a failed write the store's file tail cannot be trusted: the next
// change writes the whole file again, and nothing acknowledged is lost.
func TestAckStoreRecoversFromAFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acks")
	s := mustOpen(t, path)
	if err := s.Set(1, Acked{Role: RolePrimary, Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(2, Acked{Role: RoleReplica, Epoch: 1}); err != nil { // opens the append handle
		t.Fatal(err)
	}
	s.f.Close() // the next append fails, as on a disk error
	if err := s.Set(3, Acked{Role: RoleReplica, Epoch: 2}); err == nil {
		t.Fatal("a failed write reported success")
	}
	if _, ok := s.Get(3); ok {
		t.Fatal("a failed write changed the store")
	}
	if err := s.Set(4, Acked{Role: RolePrimary, Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := map[int]Acked{1: {Role: RolePrimary, Epoch: 1}, 2: {Role: RoleReplica, Epoch: 1}, 4: {Role: RolePrimary, Epoch: 3}}
	if got := mustOpen(t, path).Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reopened %+v, want %+v", got, want)
	}
}

const killChildEnv = "STEWARD_HOOKS_ACKSTORE_CHILD"

// An acknowledgement recorded before Set returns survives a SIGKILL at any
// moment, compaction included. A child process records batches as fast as
// it can and says which ones returned; it is killed without warning.
func TestAckStoreSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv(killChildEnv); path != "" {
		runAckStoreChild(path)
		return
	}
	for trial, stopAfter := range []int{3, 90, 170} { // batches of 50: the last is past a compaction
		path := filepath.Join(t.TempDir(), "webhook-acks.json")
		cmd := exec.Command(os.Args[0], "-test.run=^TestAckStoreSurvivesSIGKILL$")
		cmd.Env = append(os.Environ(), killChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		reported := -1
		for reported < stopAfter && lines.Scan() {
			if k, err := strconv.Atoi(lines.Text()); err == nil {
				reported = k
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		if reported < stopAfter {
			t.Fatalf("trial %d: the child stopped after batch %d", trial, reported)
		}
		s := mustOpen(t, path)
		got := s.Snapshot()
		for p := range ackChildPartitions {
			// Every batch sets every partition: each must be at least at
			// the epoch of the last batch that returned.
			if a, ok := got[p]; !ok || a.Epoch < uint64(reported) || a.Role != RoleReplica {
				t.Fatalf("trial %d: batch %d returned, but partition %d is %+v (present %v)", trial, reported, p, a, ok)
			}
		}
	}
}

const ackChildPartitions = 50

// runAckStoreChild records batch after batch, printing each number once it
// returned, until it is killed.
func runAckStoreChild(path string) {
	s, err := OpenAckStore(path)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	batch := make([]AckChange, ackChildPartitions)
	for k := 0; ; k++ {
		for p := range batch {
			batch[p] = set(p, RoleReplica, uint64(k))
		}
		if err := s.Apply(batch); err != nil {
			fmt.Println("apply:", err)
			os.Exit(2)
		}
		// Once the parent is gone, this fails with EPIPE and the child dies.
		fmt.Println(k)
	}
}
