package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func mustKey(t *testing.T) []byte {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// talk checks that gossip flows both ways between a and b with the keys
// they hold now: each gossips a new zone and waits for the other to see it.
func talk(t *testing.T, step string, a, b *member) {
	t.Helper()
	for _, pair := range [][2]*member{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		meta := from.LocalNode().Meta
		meta.Zone = fmt.Sprintf("%s-after-%s", from.nodeID, step)
		if err := from.UpdateMeta(meta); err != nil {
			t.Fatalf("%s: %s UpdateMeta: %v", step, from.nodeID, err)
		}
		eventually(t, 5*time.Second, func() error {
			if n, ok := to.Member(from.nodeID); !ok || n.Meta.Zone != meta.Zone || n.State != StateAlive {
				return fmt.Errorf("%s: %s sees %s as %+v, want alive in zone %s", step, to.nodeID, from.nodeID, n, meta.Zone)
			}
			return nil
		})
	}
}

// wantKeys checks a member's keyring, and its keyring file when it has one.
func wantKeys(t *testing.T, step string, m *member, file string, want ...[]byte) {
	t.Helper()
	got, err := m.ListKeys()
	if err != nil {
		t.Fatalf("%s: %s ListKeys: %v", step, m.nodeID, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: %s keyring has %d keys (primary %x...), want %d (primary %x...)", step, m.nodeID, len(got), got[0][:4], len(want), want[0][:4])
	}
	if file == "" {
		return
	}
	saved, err := LoadKeyringFile(file)
	if err != nil {
		t.Fatalf("%s: %s keyring file: %v", step, m.nodeID, err)
	}
	if !reflect.DeepEqual(saved, want) {
		t.Fatalf("%s: %s keyring file disagrees with the running keyring", step, m.nodeID)
	}
}

func tryJoin(t *testing.T, cfg *Config, seed *member) error {
	t.Helper()
	m := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	_, err := m.Join(ctx, []string{seed.Addr()})
	return err
}

// The rotation an operator runs with `agent keyring`: each step on every
// member before the next. The members keep talking after every step, the
// files follow the keyrings, and at the end the old key is useless.
func TestKeyRotationWithoutDowntime(t *testing.T) {
	keyA, keyB := mustKey(t), mustKey(t)
	dir := t.TempDir()
	file := func(id string) string { return filepath.Join(dir, id+".keyring") }
	ms := cluster(t, 2, func(c *Config) {
		c.Keyring = [][]byte{keyA}
		c.KeyringFile = file(c.NodeID)
	})
	talk(t, "start", ms[0], ms[1])

	for _, m := range ms {
		if err := m.InstallKey(keyB); err != nil {
			t.Fatalf("%s InstallKey: %v", m.nodeID, err)
		}
		wantKeys(t, "install", m, file(m.nodeID), keyA, keyB)
	}
	talk(t, "install", ms[0], ms[1])

	// Between the two UseKey calls n1 sends with B and n2 with A: both
	// still understand each other.
	if err := ms[0].UseKey(keyB); err != nil {
		t.Fatalf("n1 UseKey: %v", err)
	}
	talk(t, "use-on-n1-only", ms[0], ms[1])
	if err := ms[1].UseKey(keyB); err != nil {
		t.Fatalf("n2 UseKey: %v", err)
	}
	for _, m := range ms {
		wantKeys(t, "use", m, file(m.nodeID), keyB, keyA)
	}
	talk(t, "use", ms[0], ms[1])

	for _, m := range ms {
		if err := m.RemoveKey(keyA); err != nil {
			t.Fatalf("%s RemoveKey: %v", m.nodeID, err)
		}
		wantKeys(t, "remove", m, file(m.nodeID), keyB)
	}
	talk(t, "remove", ms[0], ms[1])

	for _, m := range ms {
		for _, ev := range m.eventsAbout(ms[0].nodeID) {
			if ev == EventDead || ev == EventLeft {
				t.Errorf("%s saw n1 %v during the rotation", m.nodeID, ev)
			}
		}
		for _, ev := range m.eventsAbout(ms[1].nodeID) {
			if ev == EventDead || ev == EventLeft {
				t.Errorf("%s saw n2 %v during the rotation", m.nodeID, ev)
			}
		}
	}

	// A node with only the old key is shut out now.
	old := testConfig("old")
	old.SecretKey = keyA
	if err := tryJoin(t, old, ms[0]); !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("a node with the removed key joined: %v", err)
	}
	if _, ok := ms[0].Member("old"); ok {
		t.Fatalf("n1 knows the node with the removed key")
	}

	// A new node with the new key joins; so does one started from n2's
	// persisted keyring, as a restarted n2 would be.
	fresh := testConfig("n3")
	fresh.SecretKey = keyB
	if err := tryJoin(t, fresh, ms[0]); err != nil {
		t.Fatalf("a node with the new key could not join: %v", err)
	}
	saved, err := LoadKeyringFile(file("n2"))
	if err != nil {
		t.Fatal(err)
	}
	restarted := testConfig("n4")
	restarted.Keyring = saved
	if err := tryJoin(t, restarted, ms[1]); err != nil {
		t.Fatalf("a node started from the persisted keyring could not join: %v", err)
	}
}

func TestKeyringOperationErrorsAndIdempotence(t *testing.T) {
	keyA, keyB, keyC := mustKey(t), mustKey(t), mustKey(t)
	cfg := testConfig("k1")
	cfg.Keyring = [][]byte{keyA, keyB}
	m := start(t, cfg)

	if err := m.UseKey(keyC); !errors.Is(err, ErrKeyNotInstalled) {
		t.Fatalf("UseKey(not installed) = %v, want ErrKeyNotInstalled", err)
	}
	if err := m.RemoveKey(keyA); !errors.Is(err, ErrRemovePrimaryKey) {
		t.Fatalf("RemoveKey(primary) = %v, want ErrRemovePrimaryKey", err)
	}
	if err := m.InstallKey([]byte("short")); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("InstallKey(short) = %v, want ErrInvalidKey", err)
	}
	// Repeating a step, as an operator re-running a command does, is fine.
	for _, op := range []func() error{
		func() error { return m.InstallKey(keyB) },
		func() error { return m.UseKey(keyA) },
		func() error { return m.RemoveKey(keyC) },
	} {
		if err := op(); err != nil {
			t.Fatalf("repeated step: %v", err)
		}
	}
	wantKeys(t, "errors", m, "", keyA, keyB)

	// ListKeys hands out copies.
	keys, _ := m.ListKeys()
	keys[0][0] ^= 0xff
	wantKeys(t, "copy", m, "", keyA, keyB)

	plain := start(t, testConfig("plain"))
	if err := plain.InstallKey(keyA); !errors.Is(err, ErrNoEncryption) {
		t.Fatalf("InstallKey on plaintext gossip = %v, want ErrNoEncryption", err)
	}
	if _, err := plain.ListKeys(); !errors.Is(err, ErrNoEncryption) {
		t.Fatalf("ListKeys on plaintext gossip = %v, want ErrNoEncryption", err)
	}
}

// A change that cannot be persisted is undone, so a restart never brings
// back a keyring other than the one that was running.
func TestKeyringChangeThatCannotBePersistedIsUndone(t *testing.T) {
	keyA, keyB, keyC := mustKey(t), mustKey(t), mustKey(t)
	dir := t.TempDir()
	cfg := testConfig("k1")
	cfg.Keyring = [][]byte{keyA, keyB}
	cfg.KeyringFile = filepath.Join(dir, "is-a-directory")
	if err := os.Mkdir(cfg.KeyringFile, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.KeyringFile, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	m := start(t, cfg)
	for name, op := range map[string]func() error{
		"install": func() error { return m.InstallKey(keyC) },
		"use":     func() error { return m.UseKey(keyB) },
		"remove":  func() error { return m.RemoveKey(keyB) },
	} {
		if err := op(); err == nil {
			t.Fatalf("%s succeeded although the keyring file cannot be written", name)
		}
		wantKeys(t, name, m, "", keyA, keyB)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestKeyringFileRoundTripAndMode(t *testing.T) {
	keys := [][]byte{mustKey(t), mustKey(t)[:16]}
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := SaveKeyringFile(path, keys); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("keyring file mode %#o, want 0600", perm)
	}
	got, err := LoadKeyringFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, keys) {
		t.Fatalf("round trip changed the keys")
	}
	// Overwriting replaces the file whole.
	if err := SaveKeyringFile(path, keys[1:]); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadKeyringFile(path); !reflect.DeepEqual(got, keys[1:]) {
		t.Fatalf("overwrite: got %d keys", len(got))
	}
	if err := SaveKeyringFile(path, nil); err == nil {
		t.Fatalf("saved an empty keyring")
	}
	if _, err := LoadKeyringFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestCorruptKeyringFilesAreRefused(t *testing.T) {
	k := "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=" // 32 bytes
	cases := map[string]struct {
		content string
		mode    os.FileMode
	}{
		"not JSON":       {"not json", 0o600},
		"truncated":      {`["` + k, 0o600},
		"object":         {`{"keys":[]}`, 0o600},
		"empty array":    {`[]`, 0o600},
		"not base64":     {`["!!!"]`, 0o600},
		"wrong key size": {`["c2hvcnQ="]`, 0o600},
		"duplicate key":  {`["` + k + `","` + k + `"]`, 0o600},
		"trailing data":  {`["` + k + `"] []`, 0o600},
		"world readable": {`["` + k + `"]`, 0o644},
		"group writable": {`["` + k + `"]`, 0o620},
		"empty file":     {``, 0o600},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring.json")
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			keys, err := LoadKeyringFile(path)
			if !errors.Is(err, ErrKeyringFile) {
				t.Fatalf("LoadKeyringFile = %d keys, %v; want ErrKeyringFile", len(keys), err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(path)) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

func TestClusterLabelDefaultsToStewardAndSeparatesClusters(t *testing.T) {
	if got := DefaultConfig().Label; got != "steward" {
		t.Fatalf("DefaultConfig().Label = %q, want steward", got)
	}
	key := mustKey(t)
	ms := cluster(t, 2, func(c *Config) { c.SecretKey = key })
	for name, label := range map[string]string{"other label": "other-cluster", "no label": ""} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("stranger")
			cfg.SecretKey = key // the right key is not enough
			cfg.Label = label
			if err := tryJoin(t, cfg, ms[0]); !errors.Is(err, ErrJoinFailed) {
				t.Fatalf("a node labelled %q joined a %q cluster: %v", label, DefaultLabel, err)
			}
			for _, m := range ms {
				if _, ok := m.Member("stranger"); ok {
					t.Fatalf("%s knows the stranger", m.nodeID)
				}
			}
		})
	}
}

func TestKeyringConfigValidation(t *testing.T) {
	k := mustKey(t)
	for name, mutate := range map[string]func(*Config){
		"secret key and keyring": func(c *Config) { c.SecretKey = k; c.Keyring = [][]byte{k} },
		"duplicate keys":         func(c *Config) { c.Keyring = [][]byte{k, k} },
		"bad key in keyring":     func(c *Config) { c.Keyring = [][]byte{k, []byte("short")} },
		"empty keyring":          func(c *Config) { c.Keyring = [][]byte{} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("bad")
			mutate(cfg)
			if g, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
				if err == nil {
					g.Shutdown()
				}
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
