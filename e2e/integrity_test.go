package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// State integrity with real agents: an agent whose raft state is gone or
// older than its own record refuses to start with one line that names the
// file and the recovery, exits 1, and creates nothing.

// refusedStart waits for n's process to exit and checks that it exited 1
// with one line saying everything in says.
func refusedStart(t *testing.T, n *node, says ...string) string {
	t.Helper()
	line := exitLine(t, n, 1)
	for _, want := range append(says, "docs/operations.md") {
		if !strings.Contains(line, want) {
			t.Fatalf("%s's error line does not say %q:\n%s", n.ID, want, n.Tail(20))
		}
	}
	t.Logf("%s refused to start: %s", n.ID, line)
	return line
}

// exitLine waits up to 30 s for n's process to exit, checks its exit
// status, and returns the last line it printed starting "agent: " (its
// error).
func exitLine(t *testing.T, n *node, status int) string {
	t.Helper()
	err, exited := n.WaitExit(30 * time.Second)
	if !exited {
		t.Fatalf("%s is still running 30 s later:\n%s", n.ID, n.Tail(20))
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != status {
		t.Fatalf("%s exited with %v, want exit status %d:\n%s", n.ID, err, status, n.Tail(20))
	}
	var line string
	for _, l := range strings.Split(n.Log(), "\n") {
		if strings.HasPrefix(l, "agent: ") {
			line = l
		}
	}
	return line
}

func TestAnAgentWhoseRaftStateIsGoneRefusesToStartAndBootstrapsNothing(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "8")
	victim := nodes[2]
	// The agent records how far its raft state came every 200 ms; killed
	// before its first record it is, as far as its data dir can tell, new
	// (a CI run at e2bc9eb killed it 150 ms after it caught up).
	eventually(t, 10*time.Second, "the agent to record its raft progress", func() error {
		_, err := raftProgress(victim)
		return err
	})
	victim.Kill()
	db := filepath.Join(victim.DataDir, "raft", "raft.db")
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}

	// The same command line as its first start: with -bootstrap-expect it
	// used to form a new cluster of its own here.
	victim.start("-bootstrap-expect", "3", "-join", nodes[0].GossipAddr())
	refusedStart(t, victim, db, "missing", "applied raft index")
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start created %s (%v)", db, err)
	}
	ms, err := nodes[0].Members()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("the cluster's members changed: %+v", ms)
	}
}

// raftProgress reads the agent's record of how far its raft state came.
func raftProgress(n *node) (applied uint64, err error) {
	data, err := os.ReadFile(filepath.Join(n.DataDir, "raft-applied.json"))
	if err != nil {
		return 0, err
	}
	var mark struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	return mark.AppliedIndex, json.Unmarshal(data, &mark)
}

func TestAnAgentRefusesRaftStateRestoredFromAnOlderCopyOrOfAnotherRaftID(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "8")
	victim := nodes[2]

	// An operator "restores" the agent's raft directory from a copy taken
	// before the cluster moved on. The agent records its progress every
	// 200 ms; the copy is taken once it has recorded some.
	eventually(t, 10*time.Second, "the agent to record its raft progress", func() error {
		_, err := raftProgress(victim)
		return err
	})
	victim.Kill()
	raftDir := filepath.Join(victim.DataDir, "raft")
	backup := filepath.Join(c.dir, "raft-backup")
	if out, err := exec.Command("cp", "-a", raftDir, backup).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v %s", err, out)
	}
	before, err := raftProgress(victim)
	if err != nil {
		t.Fatal(err)
	}
	victim.start("-join", nodes[0].GossipAddr())
	// The victim may have been the leader: the write goes through once the
	// others know the new one.
	eventually(t, 30*time.Second, "maintenance on", func() error {
		if out, err := runCLI(t, "maintenance", "on", "-http-addr", nodes[0].APIAddr()); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	eventually(t, 30*time.Second, "the agent to record progress past the copy", func() error {
		applied, err := raftProgress(victim)
		if err != nil {
			return err
		}
		if applied <= before {
			return fmt.Errorf("recorded applied index %d, the copy has %d", applied, before)
		}
		return nil
	})
	victim.Kill()
	if err := os.RemoveAll(raftDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, raftDir); err != nil {
		t.Fatal(err)
	}
	victim.start("-join", nodes[0].GossipAddr())
	refusedStart(t, victim, filepath.Join(raftDir, "raft.db"), "rolled back")

	// Another agent's raft-id file is changed: its state belongs to the
	// old ID.
	other := nodes[1]
	other.Kill()
	idFile := filepath.Join(other.DataDir, "raft-id")
	old, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idFile, []byte(other.ID+"-0badc0de\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other.start("-join", nodes[0].GossipAddr())
	refusedStart(t, other, "belongs to raft server "+fmt.Sprintf("%q", strings.TrimSpace(string(old))), "raft-id")
}
