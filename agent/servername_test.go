package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Agents whose addresses change (pods) share one certificate for a
// cluster-wide name and verify that name instead of the peer's IP: two
// agents on 127.0.0.2 and 127.0.0.3, which their certificate does not
// name, form a cluster over mutual TLS with -tls-server-name.
func TestAgentsVerifyAClusterWideServerNameInsteadOfPeerIPs(t *testing.T) {
	dir := makeCA(t)
	certPath, keyPath, err := GenerateNodeCert(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), dir, "node", nil, "steward.kv-peers")
	if err != nil {
		t.Fatal(err)
	}
	var agents []*Agent
	for i, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		cfg := testConfig(t, []string{"kv-0", "kv-1"}[i], t.TempDir())
		cfg.Bind = ip
		cfg.BootstrapExpect = 2
		cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = certPath, keyPath, filepath.Join(dir, CACertFile)
		cfg.TLSServerName = "steward.kv-peers"
		if i > 0 {
			cfg.Join = []string{agents[0].GossipAddr()}
		}
		agents = append(agents, startAgent(t, cfg))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range agents {
		if err := a.WaitReady(ctx); err != nil {
			t.Fatalf("%s: %v", a.cfg.NodeID, err)
		}
	}
	if st := agents[1].Status(); st.Members != 2 || st.LeaderID == "" {
		t.Fatalf("kv-1 sees %d members, leader %q: want 2 and a leader over TLS", st.Members, st.LeaderID)
	}
}

// A certificate without the name is refused at start, naming the flag and
// how to issue a fitting one, rather than by every peer later.
func TestACertificateWithoutTheServerNameIsRefusedAtStart(t *testing.T) {
	dir := makeCA(t)
	certPath, keyPath := makeNodeCert(t, dir, "kv-0")
	cfg := testConfig(t, "kv-0", t.TempDir())
	cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = certPath, keyPath, filepath.Join(dir, CACertFile)
	cfg.TLSServerName = "steward.kv-peers"
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start()
	if err == nil {
		_ = a.Shutdown()
		t.Fatal("an agent started with a certificate that does not carry -tls-server-name")
	}
	if !strings.Contains(err.Error(), "-tls-server-name") || !strings.Contains(err.Error(), "-dns steward.kv-peers") {
		t.Fatalf("error %q should name -tls-server-name and how to issue a certificate for it", err)
	}
	_ = a.Shutdown()
}
