package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-dev/steward/hooks"
	"github.com/steward-dev/steward/localcluster"
)

// Security scenarios.

// runCLI runs the agent binary with args and returns its combined output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(agentBin, args...).CombinedOutput()
	return string(out), err
}

func TestAnAgentWithAnotherKeyOrNoKeyCannotJoin(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 2, "-partitions", "8")
	otherKey := base64.StdEncoding.EncodeToString([]byte("ffffffffffffffffffffffffffffffff"))
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"wrong key", []string{"-encrypt", otherKey}},
		{"no key", []string{"-insecure"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			intruder := c.add("intruder-" + strings.ReplaceAll(tc.name, " ", "-"))
			// Flags given later win over the harness's -encrypt; for "no
			// key" an empty -encrypt clears it, since -insecure cannot be
			// combined with a key.
			args := append([]string{"-join", nodes[0].GossipAddr(), "-join-timeout", "3s"}, tc.args...)
			if tc.name == "no key" {
				args = append([]string{"-encrypt", ""}, args...)
			}
			intruder.start(args...)
			err, exited := intruder.WaitExit(30 * time.Second)
			if !exited {
				t.Fatal("the intruder is still running after its join timeout")
			}
			if err == nil {
				t.Fatalf("the intruder exited 0:\n%s", intruder.Tail(20))
			}
			if !strings.Contains(intruder.Log(), "-join") {
				t.Fatalf("the intruder's error does not say the join failed:\n%s", intruder.Tail(20))
			}
			ms, err := nodes[0].Members()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if strings.HasPrefix(m.ID, "intruder") {
					t.Fatalf("the intruder became a member: %+v", m)
				}
			}
		})
	}
}

func TestGossipKeyRotationCausesNoFailure(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "16")
	newKey := base64.StdEncoding.EncodeToString([]byte("NEWKEY-0123456789abcdef-NEWKEY!!"))
	for _, step := range [][]string{{"-install", newKey}, {"-use", newKey}, {"-remove", localcluster.TestGossipKey}} {
		for _, n := range nodes {
			if out, err := runCLI(t, append([]string{"keyring", "-http-addr", n.APIAddr()}, step...)...); err != nil {
				t.Fatalf("keyring %v on %s: %v\n%s", step, n.ID, err, out)
			}
		}
	}
	out, err := runCLI(t, "keyring", "-list", "-http-addr", nodes[0].APIAddr())
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "(primary)") {
		t.Fatalf("after rotation one primary key should be left: %v\n%s", err, out)
	}
	// Nobody was suspected long enough to fail, and a node with only the
	// new key joins.
	for _, n := range nodes {
		if strings.Contains(n.Log(), "member failed") {
			t.Fatalf("%s marked a member failed during the rotation", n.ID)
		}
	}
	late := c.add("late")
	late.start("-join", nodes[1].GossipAddr(), "-encrypt", newKey)
	eventually(t, 30*time.Second, "the node with the new key joins", func() error {
		st, err := nodes[0].MemberStatus("late")
		if err != nil {
			return err
		}
		if st != "alive" {
			return fmt.Errorf("late is %s", st)
		}
		return nil
	})
	// A restarted agent keeps the rotated keyring (the data dir's file wins
	// over its old -encrypt flag).
	nodes[2].Kill()
	nodes[2].start("-join", nodes[0].GossipAddr())
	eventually(t, 30*time.Second, "the restarted agent is back with the rotated keyring", func() error {
		st, err := nodes[2].Status()
		if err != nil {
			return err
		}
		if st.LeaderID == "" {
			return fmt.Errorf("no leader known")
		}
		return nil
	})
}

func TestRaftOverMutualTLSRefusesAClientWithoutCertificate(t *testing.T) {
	c := newCluster(t)
	certDir := filepath.Join(c.dir, "certs")
	if out, err := runCLI(t, "tls", "ca", "-dir", certDir); err != nil {
		t.Fatalf("tls ca: %v\n%s", err, out)
	}
	var nodes []*node
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		if out, err := runCLI(t, "tls", "cert", "-dir", certDir, "-node-id", id, "-ip", "127.0.0.1"); err != nil {
			t.Fatalf("tls cert: %v\n%s", err, out)
		}
		nodes = append(nodes, c.add(id,
			"-tls-cert", filepath.Join(certDir, id+".pem"),
			"-tls-key", filepath.Join(certDir, id+"-key.pem"),
			"-tls-ca", filepath.Join(certDir, "ca.pem")))
	}
	for _, n := range nodes {
		n.start("-bootstrap-expect", "3", "-join", nodes[0].GossipAddr())
	}
	waitSameTable(t, nodes, 60*time.Second)

	before, err := nodes[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	// A TLS client without a certificate is refused by the raft port.
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", nodes[0].RaftPort), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_, err = conn.Write([]byte("hello"))
		if err == nil {
			buf := make([]byte, 1)
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = conn.Read(buf)
		}
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate could talk to the raft port")
	}
	after, err := nodes[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	if after.Term != before.Term || after.LeaderID != before.LeaderID {
		t.Fatalf("the refused client disturbed raft: %+v then %+v", before, after)
	}
}

func TestMutatingCallsWithoutTheTokenAreRefusedAndChangeNothing(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 2, "-partitions", "8", "-api-token", "s3cret-token")
	for _, call := range []struct{ path, body string }{
		{"/v1/maintenance", `{"enabled":true}`},
		{"/v1/leave", `{}`},
		{"/v1/keyring", `{"op":"install","key":"` + localcluster.TestGossipKey + `"}`},
		{"/v1/migrations/m1/complete", `{}`},
	} {
		for _, auth := range []string{"", "Bearer wrong"} {
			req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[0].APIAddr()+call.path, strings.NewReader(call.body))
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("POST %s with %q: %d, want 401", call.path, auth, resp.StatusCode)
			}
		}
	}
	var st struct {
		Maintenance bool   `json:"maintenance"`
		Leaving     string `json:"leaving"`
	}
	if err := nodes[0].GetJSON("/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Maintenance || st.Leaving != "" {
		t.Fatalf("refused calls changed something: %+v", st)
	}
	// With the token, the same call works.
	out, err := runCLI(t, "maintenance", "on", "-http-addr", nodes[0].APIAddr(), "-api-token", "s3cret-token")
	if err != nil {
		t.Fatalf("maintenance with the token: %v\n%s", err, out)
	}
}

// The raft port carries forwarded writes; without TLS it is the cluster
// key (derived from the gossip key) that keeps a stranger's forged write
// out. The forged frame is what a follower sent before the handshake
// existed: kind 0xF0, a length, an encoded set_maintenance command.
func TestAForgedWriteOnTheRaftPortIsRefusedAndChangesNothing(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 2, "-partitions", "8")
	command := append([]byte{1}, `{"kind":"set_maintenance","at":1,"maintenance":true}`...)
	forged := binary.BigEndian.AppendUint32([]byte{0xF0}, uint32(len(command)))
	forged = append(forged, command...)
	for _, n := range nodes {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.RaftPort), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(forged); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		reply, _ := io.ReadAll(conn)
		conn.Close()
		if len(reply) < 3 || reply[0] != 0x01 || !strings.Contains(string(reply), "cluster-key handshake") {
			t.Fatalf("%s answered a forged write with %q, want a refusal naming the cluster-key handshake", n.ID, reply)
		}
	}
	for _, n := range nodes {
		var st struct {
			Maintenance bool `json:"maintenance"`
		}
		if err := n.GetJSON("/v1/status", &st); err != nil {
			t.Fatal(err)
		}
		if st.Maintenance {
			t.Fatalf("a forged write turned maintenance on at %s", n.ID)
		}
	}
	if !strings.Contains(nodes[0].Log()+nodes[1].Log(), "refused a connection on the raft port") {
		t.Fatalf("no agent logged the refusal")
	}
}

func TestTamperedWebhooksAreRejectedByTheApp(t *testing.T) {
	c := newCluster(t)
	nodes := formAppCluster(t, c, 3, "-partitions", "8", "-replication-factor", "3")
	secret, _ := hooks.ParseSecret(testWebhookSecret)
	body := []byte(`{"id":"evil-1","type":"partition.release","node_id":"node1","partition":0,"epoch":999,"role":"none","timestamp":1}`)
	for name, mutate := range map[string]func(h http.Header, b []byte) []byte{
		"tampered body": func(h http.Header, b []byte) []byte {
			hooks.SignHeaders(h, secret, "evil-1", time.Now(), b)
			return bytes.Replace(b, []byte(`"partition":0`), []byte(`"partition":1`), 1)
		},
		"stale timestamp": func(h http.Header, b []byte) []byte {
			hooks.SignHeaders(h, secret, "evil-1", time.Now().Add(-time.Hour), b)
			return b
		},
		"wrong secret": func(h http.Header, b []byte) []byte {
			hooks.SignHeaders(h, []byte("not-the-secret-at-all-0123456789"), "evil-1", time.Now(), b)
			return b
		},
	} {
		h := http.Header{}
		sent := mutate(h, append([]byte(nil), body...))
		req, _ := http.NewRequest(http.MethodPost, "http://"+nodes[0].app.Addr()+"/steward/events", bytes.NewReader(sent))
		req.Header = h
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: the app answered %d, want 401", name, resp.StatusCode)
		}
	}
}

func TestACorruptedDataDirRefusesToStart(t *testing.T) {
	c := newCluster(t)
	nodes := formCluster(t, c, 3, "-partitions", "8")
	victim := nodes[2]
	victim.Kill()
	db := filepath.Join(victim.DataDir, "raft", "raft.db")
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("no raft.db where expected: %v", err)
	}
	if err := os.WriteFile(db, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	victim.start("-join", nodes[0].GossipAddr())
	err, exited := victim.WaitExit(30 * time.Second)
	if !exited || err == nil {
		t.Fatalf("an agent with a corrupted raft log must refuse to start (exited %v, err %v)", exited, err)
	}
	if !strings.Contains(victim.Log(), "raft") {
		t.Fatalf("the refusal does not say what is wrong:\n%s", victim.Tail(10))
	}
}
