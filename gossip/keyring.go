package gossip

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Key rotation without downtime is three steps, each run on every member
// before the next step starts anywhere (the agent's `agent keyring` walks
// the agents one by one, as Consul's keyring command did before it had
// cluster-wide queries):
//
//  1. InstallKey(new): every member can now decrypt the new key, still
//     sending with the old one.
//  2. UseKey(new): members send with the new key; those not yet switched
//     still read it, because they installed it in step 1.
//  3. RemoveKey(old): nobody sends with it any more.
//
// Skipping ahead (UseKey on one member before all have installed the key)
// cuts the members without it off until they catch up.

var (
	// ErrNoEncryption is returned by the keyring methods of a Gossip
	// started without a key: plaintext gossip cannot be switched to
	// encrypted at run time, since the members would not understand each
	// other during the switch. Restart with a key instead.
	ErrNoEncryption = errors.New("gossip: encryption is not enabled (no SecretKey or Keyring), so there is no keyring to change")
	// ErrKeyNotInstalled is returned by UseKey for a key not in the
	// keyring: install it first, on every member.
	ErrKeyNotInstalled = errors.New("gossip: key is not installed; install it on every member first")
	// ErrRemovePrimaryKey is returned by RemoveKey for the key in use.
	ErrRemovePrimaryKey = errors.New("gossip: cannot remove the primary key; use another key first")
	// ErrKeyringFile is wrapped by every error about the contents of a
	// keyring file (not by errors reading or writing it).
	ErrKeyringFile = errors.New("gossip: bad keyring file")
)

// InstallKey adds key to the keyring, for decryption only; UseKey makes it
// the primary. Installing a key that is already there changes nothing.
func (g *Gossip) InstallKey(key []byte) error {
	if err := validateKey(key); err != nil {
		return err
	}
	return g.changeKeyring(func(before [][]byte) error {
		if containsKey(before, key) {
			return errNoChange
		}
		return g.keyring.AddKey(slices.Clone(key))
	})
}

// UseKey makes an installed key the primary: from now on this member
// encrypts everything it sends with it. Every member must have installed it
// first. Using the current primary changes nothing.
func (g *Gossip) UseKey(key []byte) error {
	return g.changeKeyring(func(before [][]byte) error {
		if !containsKey(before, key) {
			return ErrKeyNotInstalled
		}
		if bytes.Equal(before[0], key) {
			return errNoChange
		}
		return g.keyring.UseKey(key)
	})
}

// RemoveKey removes a key that is not the primary. Removing a key that is
// not installed changes nothing.
func (g *Gossip) RemoveKey(key []byte) error {
	return g.changeKeyring(func(before [][]byte) error {
		if bytes.Equal(before[0], key) {
			return ErrRemovePrimaryKey
		}
		if !containsKey(before, key) {
			return errNoChange
		}
		return g.keyring.RemoveKey(key)
	})
}

// ListKeys returns copies of the installed keys, primary first.
func (g *Gossip) ListKeys() ([][]byte, error) {
	if g.keyring == nil {
		return nil, ErrNoEncryption
	}
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	return cloneKeys(g.keyring.GetKeys()), nil
}

// errNoChange tells changeKeyring that the operation had nothing to do.
var errNoChange = errors.New("no change")

// changeKeyring runs change on the live keyring and persists the result to
// the keyring file, restoring the previous keyring if that fails.
func (g *Gossip) changeKeyring(change func(before [][]byte) error) error {
	if g.keyring == nil {
		return ErrNoEncryption
	}
	if err := g.usable(); err != nil {
		return err
	}
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	before := cloneKeys(g.keyring.GetKeys())
	switch err := change(before); {
	case errors.Is(err, errNoChange):
		return nil
	case err != nil:
		return fmt.Errorf("gossip: keyring: %w", err)
	}
	after := cloneKeys(g.keyring.GetKeys())
	if g.keyringFile != "" {
		if err := SaveKeyringFile(g.keyringFile, after); err != nil {
			g.restoreKeyring(before, after)
			return fmt.Errorf("gossip: keyring unchanged, could not persist it: %w", err)
		}
	}
	g.logger.Info("gossip keyring changed", "keys", len(after))
	return nil
}

// restoreKeyring puts back the keys and primary of before, for a change
// that could not be persisted.
func (g *Gossip) restoreKeyring(before, after [][]byte) {
	for _, k := range before {
		g.keyring.AddKey(k) // errors impossible: k was valid before
	}
	g.keyring.UseKey(before[0])
	for _, k := range after {
		if !containsKey(before, k) {
			g.keyring.RemoveKey(k)
		}
	}
}

// keyringFileJSON is the file format: a JSON array of base64 (standard,
// padded) keys, primary first, as Consul and Serf write theirs.
type keyringFileJSON []string

// LoadKeyringFile reads a keyring file written by SaveKeyringFile and
// returns its keys, primary first, ready for Config.Keyring. A file that is
// not a JSON array of valid keys, is empty, holds a key twice, or can be
// read or written by anyone but its owner (mode beyond 0600) is refused
// with an error wrapping ErrKeyringFile that names the file.
func LoadKeyringFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: mode %#o lets other users read or change the gossip keys; chmod 600 it", ErrKeyringFile, path, perm)
	}
	var encoded keyringFileJSON
	dec := json.NewDecoder(f)
	if err := dec.Decode(&encoded); err != nil {
		return nil, fmt.Errorf("%w %s: not a JSON array of base64 keys: %v", ErrKeyringFile, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w %s: trailing data after the JSON array", ErrKeyringFile, path)
	}
	keys := make([][]byte, 0, len(encoded))
	for i, s := range encoded {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("%w %s: key %d: %v", ErrKeyringFile, path, i+1, err)
		}
		keys = append(keys, k)
	}
	if err := validateKeys(keys); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrKeyringFile, path, err)
	}
	return keys, nil
}

// SaveKeyringFile writes keys, primary first, to path as a JSON array of
// base64 keys with mode 0600. The write is atomic (a temporary file in the
// same directory, synced, then renamed over path): a crash leaves either
// the old file or the new one, never half of one.
func SaveKeyringFile(path string, keys [][]byte) error {
	if err := validateKeys(keys); err != nil {
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	encoded := make(keyringFileJSON, len(keys))
	for i, k := range keys {
		encoded[i] = base64.StdEncoding.EncodeToString(k)
	}
	data, err := json.MarshalIndent(encoded, "", "  ")
	if err != nil {
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	data = append(data, '\n')

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	tmpName := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmpName)
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	// CreateTemp already makes the file 0600; chmod anyway so that the
	// mode does not depend on that detail.
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
		return fail(err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		os.Remove(tmpName)
		return fmt.Errorf("gossip: keyring file %s: %w", path, err)
	}
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// validateKeys checks a keyring: at least one key, each valid, none twice.
func validateKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no keys", ErrInvalidKey)
	}
	for i, k := range keys {
		if err := validateKey(k); err != nil {
			return fmt.Errorf("key %d: %w", i+1, err)
		}
		if containsKey(keys[:i], k) {
			return fmt.Errorf("%w: key %d appears twice", ErrInvalidKey, i+1)
		}
	}
	return nil
}

func containsKey(keys [][]byte, key []byte) bool {
	return slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, key) })
}

// cloneKeys deep-copies keys: memberlist's GetKeys returns its internal
// slice, which its RemoveKey later shifts in place.
func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
}
