package agent

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// makeCA makes a test CA in a fresh directory and returns it.
func makeCA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if _, _, err := GenerateTestCA(dir); err != nil {
		t.Fatalf("GenerateTestCA: %v", err)
	}
	return dir
}

// makeNodeCert issues nodeID's certificate from the CA in dir.
func makeNodeCert(t *testing.T, dir, nodeID string, ips ...string) (certPath, keyPath string) {
	t.Helper()
	var parsed []net.IP
	for _, ip := range ips {
		parsed = append(parsed, net.ParseIP(ip))
	}
	certPath, keyPath, err := GenerateNodeCert(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), dir, nodeID, parsed)
	if err != nil {
		t.Fatalf("GenerateNodeCert: %v", err)
	}
	if certPath != filepath.Join(dir, nodeID+".pem") || keyPath != filepath.Join(dir, nodeID+"-key.pem") {
		t.Fatalf("files %s and %s, want <dir>/%s.pem and <dir>/%s-key.pem", certPath, keyPath, nodeID, nodeID)
	}
	return certPath, keyPath
}

func nodeTLSConfig(t *testing.T, dir, nodeID string) *tls.Config {
	t.Helper()
	certPath, keyPath := makeNodeCert(t, dir, nodeID)
	conf, err := LoadTLSConfig(certPath, keyPath, filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatalf("LoadTLSConfig: %v", err)
	}
	return conf
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestATestCAIssuesNodeCertificatesForServerAndClientAuth(t *testing.T) {
	dir := makeCA(t)
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("CA dir mode %#o, want 0700", m)
	}
	if m := fileMode(t, filepath.Join(dir, CAKeyFile)); m != 0o600 {
		t.Errorf("CA key mode %#o, want 0600", m)
	}
	ca, err := readCertificate(filepath.Join(dir, CACertFile), "CA certificate")
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA {
		t.Fatalf("the CA certificate is not a CA")
	}

	certPath, keyPath := makeNodeCert(t, dir, "node-a", "10.0.0.5", "127.0.0.1")
	if m := fileMode(t, keyPath); m != 0o600 {
		t.Errorf("node key mode %#o, want 0600", m)
	}
	cert, err := readCertificate(certPath, "certificate")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node-a" {
		t.Errorf("CommonName %q, want node-a", cert.Subject.CommonName)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if slices.Sort(ips); !slices.Equal(ips, []string{"10.0.0.5", "127.0.0.1"}) {
		t.Errorf("IP SANs %v, want 127.0.0.1 (once) and 10.0.0.5", ips)
	}
	if life := cert.NotAfter.Sub(time.Now()); life < 364*24*time.Hour || life > 366*24*time.Hour {
		t.Errorf("node certificate valid for %v, want a year", life)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: ""}); err != nil {
			t.Errorf("node certificate does not verify for usage %v: %v", usage, err)
		}
	}
	if err := cert.VerifyHostname("10.0.0.5"); err != nil {
		t.Errorf("not valid for its bind IP: %v", err)
	}

	// Nothing is ever overwritten: not the CA, not a node's key.
	if _, _, err := GenerateTestCA(dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second CA in the same dir: %v, want a refusal to overwrite", err)
	}
	if _, _, err := GenerateNodeCert(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), dir, "node-a", nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second certificate for the same node: %v, want a refusal to overwrite", err)
	}
	if _, _, err := GenerateNodeCert(filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile), dir, "../x", nil); err == nil {
		t.Errorf("a node ID with a path was accepted")
	}
	if _, err := readCertificate(certPath, "certificate"); err != nil {
		t.Errorf("the refused second run damaged the first certificate: %v", err)
	}
}

func TestLoadTLSConfigIsMutualTLS(t *testing.T) {
	dir := makeCA(t)
	conf := nodeTLSConfig(t, dir, "n1")
	if conf.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %#x, want TLS 1.2", conf.MinVersion)
	}
	if conf.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth %v, want RequireAndVerifyClientCert", conf.ClientAuth)
	}
	if len(conf.Certificates) != 1 || conf.RootCAs == nil || conf.ClientCAs == nil || conf.InsecureSkipVerify {
		t.Errorf("config lacks a certificate or CA pools: %+v", conf)
	}
}

func TestLoadTLSConfigNamesTheBadFile(t *testing.T) {
	dir := makeCA(t)
	cert, key := makeNodeCert(t, dir, "n1")
	_, otherKey := makeNodeCert(t, dir, "n2")
	ca := filepath.Join(dir, CACertFile)
	otherDir := makeCA(t)
	foreignCert, foreignKey := makeNodeCert(t, otherDir, "n1")

	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a PEM file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	looseKey := filepath.Join(t.TempDir(), "loose-key.pem")
	data, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(looseKey, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(looseKey, 0o644) // past the umask
	missing := filepath.Join(t.TempDir(), "missing.pem")

	for name, tc := range map[string]struct {
		cert, key, ca string
		blame         string // the file the error must name
		says          string
	}{
		"missing certificate":     {missing, key, ca, missing, "certificate file"},
		"certificate not PEM":     {junk, key, ca, junk, "no PEM certificate"},
		"missing key":             {cert, missing, ca, missing, "key file"},
		"key of another node":     {cert, otherKey, ca, otherKey, "does not match"},
		"key readable by others":  {cert, looseKey, ca, looseKey, "chmod 600"},
		"missing CA":              {cert, key, missing, missing, "CA file"},
		"CA not PEM":              {cert, key, junk, junk, "no PEM certificate"},
		"certificate of other CA": {foreignCert, foreignKey, ca, foreignCert, "does not verify"},
	} {
		t.Run(name, func(t *testing.T) {
			conf, err := LoadTLSConfig(tc.cert, tc.key, tc.ca)
			if err == nil {
				t.Fatalf("LoadTLSConfig accepted it: %+v", conf)
			}
			if !strings.Contains(err.Error(), tc.blame) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q should name %s and say %q", err, tc.blame, tc.says)
			}
		})
	}
}

// handshake runs a TLS handshake on loopback between a server and a client
// configuration and returns each side's error and, on success, the client
// certificate's CommonName as the server saw it.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, clientCN string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		err error
		cn  string
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		// Echo one byte so the client learns about a late rejection of its
		// certificate (in TLS 1.3 the server checks it after the client's
		// handshake has returned).
		buf := make([]byte, 1)
		if _, err := tc.Read(buf); err != nil {
			done <- result{err: err}
			return
		}
		tc.Write(buf)
		done <- result{cn: tc.ConnectionState().PeerCertificates[0].Subject.CommonName}
	}()
	client = client.Clone()
	client.ServerName = "127.0.0.1"
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err = conn.Write([]byte{'x'}); err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	r := <-done
	return r.err, err, r.cn
}

func TestTLSHandshakeBetweenNodesOfOneCA(t *testing.T) {
	dir := makeCA(t)
	serverErr, clientErr, cn := handshake(t, nodeTLSConfig(t, dir, "n1"), nodeTLSConfig(t, dir, "n2"))
	if serverErr != nil || clientErr != nil {
		t.Fatalf("handshake between nodes of one CA: server %v, client %v", serverErr, clientErr)
	}
	if cn != "n2" {
		t.Fatalf("server saw client certificate %q, want n2", cn)
	}
}

func TestTLSHandshakeAcrossCAsFails(t *testing.T) {
	ours, theirs := makeCA(t), makeCA(t)
	server := nodeTLSConfig(t, ours, "n1")

	t.Run("peer from another CA", func(t *testing.T) {
		serverErr, clientErr, _ := handshake(t, server, nodeTLSConfig(t, theirs, "mallory"))
		if serverErr == nil || clientErr == nil {
			t.Fatalf("handshake across CAs: server %v, client %v; want both to fail", serverErr, clientErr)
		}
	})
	t.Run("client certificate from another CA, trusting ours", func(t *testing.T) {
		client := nodeTLSConfig(t, theirs, "mallory2")
		client.RootCAs = server.RootCAs
		serverErr, clientErr, _ := handshake(t, server, client)
		if serverErr == nil || clientErr == nil {
			t.Fatalf("foreign client certificate: server %v, client %v; want both to fail", serverErr, clientErr)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		serverErr, clientErr, _ := handshake(t, server, &tls.Config{RootCAs: server.RootCAs})
		if serverErr == nil || clientErr == nil {
			t.Fatalf("no client certificate: server %v, client %v; want both to fail", serverErr, clientErr)
		}
	})
}
