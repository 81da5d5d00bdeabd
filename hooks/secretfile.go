package hooks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreateSecret returns the webhook secret kept at path (for the agent
// started without -webhook-secret): the file's secret if it exists, else a
// new one from GenerateSecret, written there with mode 0600 (temporary
// file, fsync, rename) so that the app's operator can read it once and the
// agent keeps it across restarts. It returns the text form ("whsec_...")
// and the key.
func LoadOrCreateSecret(path string) (string, []byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		text := strings.TrimSpace(string(data))
		key, err := ParseSecret(text)
		if err != nil {
			return "", nil, fmt.Errorf("hooks: secret file %s: %w", path, err)
		}
		return text, key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", nil, fmt.Errorf("hooks: read secret: %w", err)
	}
	text, err := GenerateSecret()
	if err != nil {
		return "", nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", nil, fmt.Errorf("hooks: write secret: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err == nil {
		if _, err = tmp.WriteString(text + "\n"); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", nil, fmt.Errorf("hooks: write secret: %w", err)
	}
	key, err := ParseSecret(text)
	return text, key, err
}
