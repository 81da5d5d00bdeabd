package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-dev/steward/agent"
)

// makeCA runs `agent tls ca` in a fresh directory and returns it.
func makeCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	var out, errOut bytes.Buffer
	if err := cmdTLS([]string{"ca", "-dir", dir}, &out, &errOut); err != nil {
		t.Fatalf("agent tls ca: %v (%s)", err, errOut.String())
	}
	return dir
}

// `agent tls ca` and `agent tls cert` name the files they write, and a
// second run never overwrites them.
func TestTLSCommandsNameTheirFilesAndNeverOverwrite(t *testing.T) {
	dir := makeCA(t)
	var out, errOut bytes.Buffer
	if err := cmdTLS([]string{"cert", "-dir", dir, "-node-id", "node-a", "-ip", "10.0.0.5"}, &out, &errOut); err != nil {
		t.Fatalf("agent tls cert: %v (%s)", err, errOut.String())
	}
	certPath, keyPath := filepath.Join(dir, "node-a.pem"), filepath.Join(dir, "node-a-key.pem")
	if !strings.Contains(out.String(), certPath) || !strings.Contains(out.String(), keyPath) {
		t.Fatalf("output does not name the files: %q", out.String())
	}
	if _, err := agent.LoadTLSConfig(certPath, keyPath, filepath.Join(dir, agent.CACertFile)); err != nil {
		t.Fatalf("the files the command wrote do not load: %v", err)
	}
	if err := cmdTLS([]string{"ca", "-dir", dir}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second `tls ca` in the same dir: %v, want a refusal to overwrite", err)
	}
	if err := cmdTLS([]string{"cert", "-dir", dir, "-node-id", "node-a"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second `tls cert` for the same node: %v, want a refusal to overwrite", err)
	}
}

func TestTLSCommandUsageErrors(t *testing.T) {
	dir := makeCA(t)
	for name, tc := range map[string]struct {
		args []string
		want func(error) bool
	}{
		"no sub-command":  {nil, isUsageError},
		"unknown":         {[]string{"bogus"}, isUsageError},
		"no node ID":      {[]string{"cert", "-dir", dir}, isUsageError},
		"stray argument":  {[]string{"ca", "-dir", dir, "extra"}, isUsageError},
		"bad IP":          {[]string{"cert", "-dir", dir, "-node-id", "x", "-ip", "nope"}, isUsageError},
		"path in node ID": {[]string{"cert", "-dir", dir, "-node-id", "../x"}, func(err error) bool { return err != nil && !isUsageError(err) }},
		"help":            {[]string{"cert", "-h"}, func(err error) bool { return errors.Is(err, flag.ErrHelp) }},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := cmdTLS(tc.args, &out, &errOut); !tc.want(err) {
				t.Fatalf("cmdTLS(%q) = %v (%T)", tc.args, err, err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x.pem")); err == nil {
		t.Fatalf("a node ID with a path wrote outside -dir")
	}
}

func isUsageError(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}
