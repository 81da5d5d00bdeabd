package gossip

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func fullMeta() Meta {
	return Meta{
		RaftID: "node-1", RaftAddr: "10.0.0.1:7001", APIAddr: "127.0.0.1:8500",
		AppAddr: "10.0.0.1:6379", Zone: "eu-west-1a", Version: "v0.1.0",
		Weight: 3, AppUnhealthy: true, Leaving: true,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for name, m := range map[string]Meta{
		"empty":           {},
		"full":            fullMeta(),
		"negative weight": {RaftID: "x", Weight: -42},
		"only leaving":    {Leaving: true},
		"returning":       {RaftID: "x", Returning: true},
		"with suspects":   {RaftID: "x", Suspects: []string{"n2", "a-much-longer-node-name-3"}},
		"with boot":       {RaftID: "x", Boot: 1<<63 | 42},
		"suspects, boot":  {RaftID: "x", Suspects: []string{"n2"}, Boot: 7},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := EncodeMeta(m)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != metaFormatV1 {
				t.Errorf("first byte %d, want format version %d", b[0], metaFormatV1)
			}
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip: %+v, want %+v", got, m)
			}
		})
	}
}

func TestMetaIsCompact(t *testing.T) {
	b, _ := EncodeMeta(fullMeta())
	if len(b) > 80 {
		t.Errorf("typical metadata takes %d bytes", len(b))
	}
}

func TestMetaSizeLimits(t *testing.T) {
	m := fullMeta()
	m.AppAddr = strings.Repeat("a", MaxMetaFieldLen+1)
	_, err := EncodeMeta(m)
	if !errors.Is(err, ErrMetaTooLong) || !strings.Contains(err.Error(), "AppAddr") {
		t.Errorf("one field too long: %v, want ErrMetaTooLong naming AppAddr", err)
	}

	// Every field at its own limit: the total is over 512 and the error
	// names the longest field.
	big := Meta{
		RaftID: strings.Repeat("r", 40), RaftAddr: strings.Repeat("a", 100),
		APIAddr: strings.Repeat("p", 100), AppAddr: strings.Repeat("q", 100),
		Zone: strings.Repeat("z", MaxMetaFieldLen), Version: "v",
	}
	_, err = EncodeMeta(big)
	if !errors.Is(err, ErrMetaTooLong) || !strings.Contains(err.Error(), "Zone") {
		t.Errorf("total too long: %v, want ErrMetaTooLong naming Zone", err)
	}

	// The largest metadata that is accepted fits memberlist's limit.
	big.Zone = strings.Repeat("z", 150)
	b, err := EncodeMeta(big)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > memberlist.MetaMaxSize {
		t.Errorf("encoded %d bytes, over %d", len(b), memberlist.MetaMaxSize)
	}
}

func TestDecodeMetaRejectsMalformed(t *testing.T) {
	good, _ := EncodeMeta(fullMeta())
	for name, b := range map[string][]byte{
		"empty":           nil,
		"unknown version": append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-1],
		"length overrun":  {1, 200, 'x'},
		"no weight":       {1, 0, 0, 0, 0, 0, 0},
	} {
		if _, err := DecodeMeta(b); !errors.Is(err, ErrMetaMalformed) {
			t.Errorf("%s: %v, want ErrMetaMalformed", name, err)
		}
	}
	// Trailing bytes are a later writer's additions: ignored.
	if m, err := DecodeMeta(append(bytes.Clone(good), 7, 7)); err != nil || !reflect.DeepEqual(m, fullMeta()) {
		t.Errorf("with trailing bytes: %+v, %v", m, err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, fullMeta(), {Weight: -1 << 40}} {
		b, _ := EncodeMeta(m)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 255})
	f.Add([]byte{2, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, err := EncodeMeta(m)
		if err != nil {
			return // a valid decoding can exceed 512 bytes in total
		}
		m2, err := DecodeMeta(again)
		if err != nil || !reflect.DeepEqual(m2, m) {
			t.Fatalf("re-encoding %+v gave %+v, %v", m, m2, err)
		}
	})
}

func TestGenerateAndParseKey(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != 32 {
		t.Fatalf("key of %d bytes", len(k))
	}
	k2, _ := GenerateKey()
	if bytes.Equal(k, k2) {
		t.Error("two generated keys are equal")
	}
	parsed, err := ParseKey(" " + base64.StdEncoding.EncodeToString(k) + "\n")
	if err != nil || !bytes.Equal(parsed, k) {
		t.Errorf("ParseKey round trip: %v", err)
	}
	for _, n := range []int{16, 24} {
		if _, err := ParseKey(base64.StdEncoding.EncodeToString(make([]byte, n))); err != nil {
			t.Errorf("%d-byte key: %v", n, err)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	for name, tc := range map[string]struct{ in, mention string }{
		"empty":      {"", "empty"},
		"not base64": {"%%%not-base64", "base64"},
		"too short":  {base64.StdEncoding.EncodeToString(make([]byte, 10)), "10 bytes"},
		"too long":   {base64.StdEncoding.EncodeToString(make([]byte, 33)), "33 bytes"},
	} {
		_, err := ParseKey(tc.in)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %v, want ErrInvalidKey mentioning %q", name, err, tc.mention)
		}
	}
}

func TestMetaSuspectsAreBounded(t *testing.T) {
	if _, err := EncodeMeta(Meta{Suspects: []string{"a", "b", "c", "d", "e"}}); err == nil {
		t.Fatal("five suspects encoded; at most MaxSuspects fit")
	}
	b, err := EncodeMeta(Meta{Suspects: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] = 9 // claim nine suspects: not a list this version wrote
	if m, err := DecodeMeta(b); err != nil || m.Suspects != nil {
		t.Fatalf("a malformed suspects tail must be ignored: %+v %v", m, err)
	}
	// Metadata from before the field (ending with the flags) still decodes.
	old, _ := EncodeMeta(Meta{RaftID: "x"})
	if m, err := DecodeMeta(old); err != nil || m.Suspects != nil {
		t.Fatalf("old metadata: %+v %v", m, err)
	}
}

// Boot follows the suspects, whose count is then written even when there
// are none: a reader that knows the suspects but not Boot reads an empty
// list and ignores the eight bytes after it, as any tail.
func TestMetaBootFollowsAnEmptySuspectList(t *testing.T) {
	b, err := EncodeMeta(Meta{RaftID: "x", Boot: 0x0102030405060708})
	if err != nil {
		t.Fatal(err)
	}
	tail := b[len(b)-9:]
	if want := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8}; !bytes.Equal(tail, want) {
		t.Fatalf("tail % x, want % x", tail, want)
	}
	if s, boot := decodeTail(tail[:1]); s != nil || boot != 0 {
		t.Fatalf("an earlier writer's empty list decodes to %v, %d", s, boot)
	}
}
