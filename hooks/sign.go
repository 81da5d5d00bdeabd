package hooks

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks convention.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts a secret in its text form.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, in either direction, before it is refused as a replay.
// It is the Standard Webhooks default.
const DefaultTolerance = 5 * time.Minute

// secretBytes is the size of generated secrets (the convention asks for
// 24 to 64 bytes).
const secretBytes = 32

// Sentinel errors of Verify and ParseSecret.
var (
	ErrMissingHeaders = errors.New("hooks: missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrBadTimestamp   = errors.New("hooks: webhook-timestamp is not unix seconds")
	ErrStaleTimestamp = errors.New("hooks: webhook-timestamp outside the tolerance")
	ErrBadSignature   = errors.New("hooks: no matching signature")
	ErrBadSecret      = errors.New("hooks: bad webhook secret")
)

// A secret's key is 24 to 64 random bytes, as the Standard Webhooks
// convention asks: shorter is guessable, and a short "secret" is usually a
// mistake (a file holding "garbage" used to become a 5-byte key that the
// app then rejected everything with).
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// secretHowTo ends every ParseSecret error: how to make a good secret.
const secretHowTo = `a webhook secret is "whsec_" followed by the base64 of 24 to 64 random bytes; make one with: echo whsec_$(head -c 32 /dev/urandom | base64)`

// ParseSecret decodes a secret given as "whsec_" + base64 (padded or not)
// of 24 to 64 bytes. Anything else is an error wrapping ErrBadSecret that
// says what is wrong without repeating the secret.
func ParseSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: it does not start with %q; %s", ErrBadSecret, SecretPrefix, secretHowTo)
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		// Some tools emit unpadded base64; accept it too.
		var err2 error
		if b, err2 = base64.RawStdEncoding.DecodeString(rest); err2 != nil {
			return nil, fmt.Errorf("%w: what follows %q is not base64 (%v); %s", ErrBadSecret, SecretPrefix, err, secretHowTo)
		}
	}
	if len(b) < minSecretBytes || len(b) > maxSecretBytes {
		return nil, fmt.Errorf("%w: it holds %d bytes; %s", ErrBadSecret, len(b), secretHowTo)
	}
	return b, nil
}

// GenerateSecret returns a new random secret in its text form, "whsec_"
// followed by the base64 of 32 random bytes.
func GenerateSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("hooks: generate secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// Sign returns the webhook-signature value ("v1,<base64>") of one delivery:
// HMAC-SHA256 with secret over "id.timestamp.body", timestamp in unix
// seconds.
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, id, ts.Unix(), body))
}

func mac(secret []byte, id string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// SignHeaders sets the three Standard Webhooks headers of a delivery on h.
func SignHeaders(h http.Header, secret []byte, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(secret, id, ts, body))
}

// Verify checks a delivery's headers against its body: the timestamp must
// be within tolerance of now (DefaultTolerance when tolerance <= 0), and one
// of the space-separated "v1,<base64>" signatures must match. Signatures of
// other versions are ignored, so that a sender may add new schemes beside
// v1. The comparison is constant-time.
func Verify(secret []byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id := header.Get(HeaderID)
	tsText := header.Get(HeaderTimestamp)
	sigs := header.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return ErrBadTimestamp
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	skew := now.Sub(time.Unix(ts, 0))
	if skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: %s from now", ErrStaleTimestamp, skew.Truncate(time.Second))
	}
	want := mac(secret, id, ts, body)
	for _, sig := range strings.Fields(sigs) {
		version, value, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrBadSignature
}
