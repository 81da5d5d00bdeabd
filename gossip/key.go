package gossip

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of keys made by GenerateKey: AES-256.
const KeySize = 32

// ErrInvalidKey is wrapped by every key validation error.
var ErrInvalidKey = errors.New("gossip: invalid encryption key")

// GenerateKey returns KeySize random bytes from crypto/rand, suitable as
// Config.SecretKey. Encode it with base64.StdEncoding to print it.
func GenerateKey() ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("gossip: generating key: %w", err)
	}
	return key, nil
}

// ParseKey decodes a base64 (standard encoding, padded) gossip key and checks
// that it is 16, 24 or 32 bytes long (AES-128, -192 or -256), the sizes
// memberlist accepts.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrInvalidKey, err)
	}
	if err := validateKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

func validateKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	default:
		return fmt.Errorf("%w: %d bytes, want 16, 24 or 32 (make one with GenerateKey / `agent keygen`)", ErrInvalidKey, len(key))
	}
}
