package hooks

import (
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The official Standard Webhooks test vector (standard-webhooks spec and
// its reference libraries).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorHeader(sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, vectorID)
	h.Set(HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(HeaderSignature, sig)
	return h
}

func mustSecret(t testing.TB, s string) []byte {
	t.Helper()
	b, err := ParseSecret(s)
	if err != nil {
		t.Fatalf("ParseSecret(%q): %v", s, err)
	}
	return b
}

func TestSignMatchesStandardWebhooksVector(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	got := Sign(secret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if got != vectorSignature {
		t.Fatalf("Sign = %q, want %q", got, vectorSignature)
	}
}

func TestVerifyAcceptsTheVector(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	now := time.Unix(vectorTimestamp, 0)
	if err := Verify(secret, vectorHeader(vectorSignature), []byte(vectorPayload), now, time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestUnpaddedBase64IsTheSameKey(t *testing.T) {
	padded := mustSecret(t, SecretPrefix+base64.StdEncoding.EncodeToString(make([]byte, 25)))
	raw := mustSecret(t, SecretPrefix+base64.RawStdEncoding.EncodeToString(make([]byte, 25)))
	if string(padded) != string(raw) {
		t.Fatal("padding changed the key")
	}
}

// A secret that is not whsec_ + base64 of 24 to 64 bytes is refused with
// a sentence saying what is wrong and how to make one, and without the
// secret itself in it.
func TestParseSecretRejectsGarbageAndShortSecrets(t *testing.T) {
	for s, says := range map[string]string{
		"":        "does not start with",
		"garbage": "does not start with",
		strings.TrimPrefix(vectorSecret, SecretPrefix): "does not start with",
		"whsec_":            "holds 0 bytes",
		"whsec_not base64!": "not base64",
		"whsec_c2VjcmV0":    "holds 6 bytes",
		SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 23)): "holds 23 bytes",
		SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, 65)): "holds 65 bytes",
	} {
		_, err := ParseSecret(s)
		if !errors.Is(err, ErrBadSecret) || !strings.Contains(err.Error(), says) || !strings.Contains(err.Error(), "24 to 64 random bytes") {
			t.Errorf("ParseSecret(%q) = %v, want ErrBadSecret saying %q and how to make one", s, err, says)
		}
		if len(s) > 8 && strings.Contains(err.Error(), strings.TrimPrefix(s, SecretPrefix)) {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
	for _, n := range []int{24, 32, 64} {
		if _, err := ParseSecret(SecretPrefix + base64.StdEncoding.EncodeToString(make([]byte, n))); err != nil {
			t.Errorf("a secret of %d bytes: %v", n, err)
		}
	}
}

func TestGeneratedSecretsRoundTripAndDiffer(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, SecretPrefix) || a == b {
		t.Fatalf("secrets %q and %q", a, b)
	}
	if key := mustSecret(t, a); len(key) != 32 {
		t.Fatalf("key of %d bytes", len(key))
	}
}

func TestVerifyRejects(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	now := time.Unix(vectorTimestamp, 0)
	body := []byte(vectorPayload)
	cases := map[string]struct {
		header http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		"tampered body": {vectorHeader(vectorSignature), []byte(`{"test": 2432232315}`), now, ErrBadSignature},
		"other id": {func() http.Header {
			h := vectorHeader(vectorSignature)
			h.Set(HeaderID, "msg_other")
			return h
		}(), body, now, ErrBadSignature},
		"wrong signature":   {vectorHeader("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="), body, now, ErrBadSignature},
		"not base64":        {vectorHeader("v1,***"), body, now, ErrBadSignature},
		"other version":     {vectorHeader("v2," + strings.TrimPrefix(vectorSignature, "v1,")), body, now, ErrBadSignature},
		"stale timestamp":   {vectorHeader(vectorSignature), body, now.Add(6 * time.Minute), ErrStaleTimestamp},
		"future timestamp":  {vectorHeader(vectorSignature), body, now.Add(-6 * time.Minute), ErrStaleTimestamp},
		"missing signature": {func() http.Header { h := vectorHeader(vectorSignature); h.Del(HeaderSignature); return h }(), body, now, ErrMissingHeaders},
		"missing id":        {func() http.Header { h := vectorHeader(vectorSignature); h.Del(HeaderID); return h }(), body, now, ErrMissingHeaders},
		"missing timestamp": {func() http.Header { h := vectorHeader(vectorSignature); h.Del(HeaderTimestamp); return h }(), body, now, ErrMissingHeaders},
		"timestamp not a number": {func() http.Header {
			h := vectorHeader(vectorSignature)
			h.Set(HeaderTimestamp, "yesterday")
			return h
		}(), body, now, ErrBadTimestamp},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if err := Verify(secret, c.header, c.body, c.now, 5*time.Minute); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyAcceptsAnyOfSeveralSignatures(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	h := vectorHeader("v1a,whatever v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + vectorSignature)
	if err := Verify(secret, h, []byte(vectorPayload), time.Unix(vectorTimestamp, 0), time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyWithDefaultToleranceAcceptsSmallSkew(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	now := time.Unix(vectorTimestamp, 0).Add(4 * time.Minute)
	if err := Verify(secret, vectorHeader(vectorSignature), []byte(vectorPayload), now, 0); err != nil {
		t.Fatalf("4 min skew with default tolerance: %v", err)
	}
}

func TestASecretIsGeneratedOnceAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhook-secret")
	text, key, err := LoadOrCreateSecret(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, SecretPrefix) || len(key) != 32 {
		t.Fatalf("secret %q, key of %d bytes", text, len(key))
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v", err, info.Mode().Perm())
	}
	again, key2, err := LoadOrCreateSecret(path)
	if err != nil || again != text || string(key2) != string(key) {
		t.Fatalf("second load %q, %v: want the same secret", again, err)
	}
	if err := os.WriteFile(path, []byte("not a secret!"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateSecret(path); !errors.Is(err, ErrBadSecret) {
		t.Fatalf("a damaged secret file gave %v, want ErrBadSecret", err)
	}
}
