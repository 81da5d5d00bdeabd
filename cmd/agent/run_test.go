package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steward-dev/steward/localcluster"
)

// lockedBuffer is the standard error of a command running in another
// goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runInBackground runs the command line and delivers its exit status.
func runInBackground(args []string, stderr *lockedBuffer) <-chan int {
	done := make(chan int, 1)
	go func() {
		var stdout bytes.Buffer
		done <- realMain(args, &stdout, stderr)
	}()
	return done
}

// A -join address nobody answers: each attempt is logged with the address
// and the error, the first line says how long the agent keeps trying, and
// at the end the agent exits 1 leaving no data dir behind.
func TestAJoinNobodyAnswersIsReportedAttemptByAttempt(t *testing.T) {
	port, err := localcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	nobody := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	dir := filepath.Join(t.TempDir(), "data")
	var stderr lockedBuffer
	code := <-runInBackground([]string{"run", "-node-id", "n1", "-data-dir", dir, "-insecure",
		"-gossip-port", "0", "-raft-port", "0", "-http-addr", "127.0.0.1:0",
		"-join", nobody, "-join-timeout", "2s"}, &stderr)
	log := stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, log)
	}
	if !strings.Contains(log, "joining the cluster") || !strings.Contains(log, "keeps_trying_for=2s") {
		t.Fatalf("no line saying how long the join keeps trying:\n%s", log)
	}
	attempts := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "[INFO]") && strings.Contains(line, "join attempt failed") && strings.Contains(line, nobody) && strings.Contains(line, "gives_up_in=") {
			attempts++
		}
	}
	if attempts < 2 {
		t.Fatalf("%d attempts logged at INFO with the address, want several in 2 s:\n%s", attempts, log)
	}
	if !strings.Contains(log, "-join-timeout 2s") {
		t.Fatalf("the final error does not name -join-timeout:\n%s", log)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a failed start left its data dir behind (%v)", err)
	}
}

// Ctrl-C stops `agent dev` without the warnings of a refused leave: it is
// a cluster of one, with nobody to hand anything over to.
func TestDevStopsQuietlyOnCtrlC(t *testing.T) {
	var stderr lockedBuffer
	done := runInBackground([]string{"dev", "-http-addr", "127.0.0.1:0", "-partitions", "4"}, &stderr)
	localcluster.Eventually(t, 30*time.Second, "agent dev started", func() error {
		if !strings.Contains(stderr.String(), "agent dev: node") {
			return fmt.Errorf("not yet: %s", stderr.String())
		}
		return nil
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("agent dev still running 30 s after SIGINT:\n%s", stderr.String())
	}
	log := stderr.String()
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERROR]") || strings.Contains(line, "leave refused") {
			t.Errorf("agent dev complained on Ctrl-C: %s", line)
		}
	}
	var dataDir string
	for _, line := range strings.Split(log, "\n") {
		if rest, ok := strings.CutPrefix(line, "agent dev: node \"dev\", data dir "); ok {
			dataDir = strings.Fields(rest)[0]
			dataDir = strings.TrimSuffix(dataDir, ",")
		}
	}
	if dataDir == "" {
		t.Fatalf("no data dir announced:\n%s", log)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("agent dev left its data dir %s (%v)", dataDir, err)
	}
}
