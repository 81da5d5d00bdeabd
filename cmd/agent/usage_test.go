package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-dev/steward/agent"
)

// oneLine runs the command line and returns its exit status and its
// standard error, failing the test unless that is exactly one line.
func oneLine(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := realMain(args, &stdout, &stderr)
	msg := strings.TrimRight(stderr.String(), "\n")
	if strings.Contains(msg, "\n") || msg == "" {
		t.Fatalf("%q printed %d lines, want one:\n%s", args, strings.Count(msg, "\n")+1, msg)
	}
	return code, msg
}

func TestAMisspeltFlagGetsOneLineAndTheFlagMeant(t *testing.T) {
	code, msg := oneLine(t, "run", "-node-ide", "n1")
	if code != 2 || !strings.Contains(msg, "unknown flag -node-ide") || !strings.Contains(msg, "did you mean -node-id?") {
		t.Fatalf("exit %d, %q: want 2 and a suggestion of -node-id", code, msg)
	}
	// Client sub-commands too.
	code, msg = oneLine(t, "members", "--http-adr", "127.0.0.1:1")
	if code != 2 || !strings.Contains(msg, "did you mean -http-addr?") {
		t.Fatalf("exit %d, %q: want 2 and a suggestion of -http-addr", code, msg)
	}
}

func TestAFlagLikeNoOtherGetsNoSuggestion(t *testing.T) {
	code, msg := oneLine(t, "run", "-zzzzzzzz")
	if code != 2 || strings.Contains(msg, "did you mean") {
		t.Fatalf("exit %d, %q: want 2 and no suggestion", code, msg)
	}
}

// README promises one line for a bad value.
func TestABadValueIsOneLineNamingTheFlag(t *testing.T) {
	code, msg := oneLine(t, "run", "-partitions", "abc")
	if code != 2 || !strings.Contains(msg, "-partitions") || !strings.Contains(msg, "abc") {
		t.Fatalf("exit %d, %q: want 2 and the flag and value named", code, msg)
	}
}

func TestAMisspeltCommandGetsOneLineAndTheCommandMeant(t *testing.T) {
	code, msg := oneLine(t, "membrs")
	if code != 2 || !strings.Contains(msg, "did you mean members?") {
		t.Fatalf("exit %d, %q: want 2 and a suggestion of members", code, msg)
	}
}

// A bad -encrypt is refused before anything is written: the data dir is
// not created, so it is not bound to the node ID either.
func TestABadKeyCreatesNoDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	code, msg := oneLine(t, "run", "-node-id", "n1", "-data-dir", dir, "-encrypt", "not-a-key", "-http-addr", "127.0.0.1:0")
	if code != 2 || !strings.Contains(msg, "-encrypt") {
		t.Fatalf("exit %d, %q: want 2 and a line naming -encrypt", code, msg)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the data dir exists after a bad -encrypt (%v)", err)
	}
}

func TestNearestIsTheClosestNameWithinAThirdOfItsLength(t *testing.T) {
	names := []string{"node-id", "data-dir", "join", "join-timeout", "http-addr"}
	for typed, want := range map[string]string{
		"nodeid": "node-id", "data_dir": "data-dir", "jion": "join", "join-timout": "join-timeout",
		"HTTP-ADDR": "http-addr", "bogus": "", "x": "",
	} {
		if got := nearest(typed, names); got != want {
			t.Errorf("nearest(%q) = %q, want %q", typed, got, want)
		}
	}
	if d := levenshtein("kitten", "sitting"); d != 3 {
		t.Errorf("levenshtein(kitten, sitting) = %d, want 3", d)
	}
}

func TestVersionSaysWhichBuildAlsoAsJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b := agent.Build()
	for _, want := range []string{"steward agent " + agent.Version, "module version " + b.ModuleVersion, "revision " + b.Revision} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("agent version does not say %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	if code := realMain([]string{"version", "-json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("version -json: exit %d: %s", code, stderr.String())
	}
	var got agent.BuildInfo
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got != b {
		t.Fatalf("version -json printed %q (%v), want %+v", stdout.String(), err, b)
	}
}
