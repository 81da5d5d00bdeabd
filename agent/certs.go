package agent

// Certificates for the agents' mutual TLS (raft, forwarded writes):
// GenerateTestCA makes a small private CA (`agent tls ca`), GenerateNodeCert
// issues a node certificate from it (`agent tls cert`), and LoadTLSConfig
// turns the -tls-cert, -tls-key and -tls-ca files into a mutual TLS
// configuration. The CA is meant for tests,
// demos and small clusters; a site with its own PKI (Vault, cert-manager)
// issues the same kind of certificate: ECDSA or RSA, server and client
// auth, IP SANs for the addresses the node advertises.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Lifetimes of what `agent tls` makes. Node certificates last a year, so
// rotating them is a yearly chore rather than a surprise; the CA lasts five,
// so that node certificates issued late in its life are not cut short.
const (
	caValidity   = 5 * 365 * 24 * time.Hour
	nodeValidity = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a peer whose clock is a little
	// behind accepts a certificate issued just now.
	clockSkew = 5 * time.Minute
)

// File names GenerateTestCA writes in its dir (`agent tls ca -dir`).
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// GenerateTestCA creates a new CA (ECDSA P-256, self-signed, five years) and
// writes dir/ca.pem (the certificate, 0644) and dir/ca-key.pem (its key,
// 0600), creating dir with mode 0700 if needed. It refuses to overwrite an
// existing file, so an existing CA key is never lost by accident.
func GenerateTestCA(dir string) (caCertPath, caKeyPath string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("tls: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Steward agents CA", Organization: []string{"Steward"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs node certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("tls: create CA certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("tls: create %s: %w", dir, err)
	}
	caCertPath = filepath.Join(dir, CACertFile)
	caKeyPath = filepath.Join(dir, CAKeyFile)
	if err := writeKeyPEM(caKeyPath, key); err != nil {
		return "", "", err
	}
	if err := writeNewFile(caCertPath, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		os.Remove(caKeyPath)
		return "", "", err
	}
	return caCertPath, caKeyPath, nil
}

// GenerateNodeCert issues a certificate for nodeID from the CA in
// caCertPath/caKeyPath and writes dir/<nodeID>.pem (0644) and
// dir/<nodeID>-key.pem (0600). The certificate (ECDSA P-256, one year,
// never past the CA's own expiry) is valid for server and client auth, has
// CommonName nodeID and carries ips as IP SANs, with 127.0.0.1 always among
// them: peers check a node's certificate against the IP of the address they
// dial, so ips must include every IP the node advertises (its -bind IP).
// dnsNames are added as DNS SANs: the cluster-wide name agents verify
// instead of IPs with -tls-server-name.
func GenerateNodeCert(caCertPath, caKeyPath, dir, nodeID string, ips []net.IP, dnsNames ...string) (certPath, keyPath string, err error) {
	if nodeID == "" || nodeID == "." || nodeID == ".." || strings.ContainsAny(nodeID, `/\`) || strings.HasPrefix(nodeID, "-") {
		return "", "", fmt.Errorf("tls: node ID %q cannot name a certificate file", nodeID)
	}
	caCert, err := readCertificate(caCertPath, "CA certificate")
	if err != nil {
		return "", "", err
	}
	if !caCert.IsCA {
		return "", "", fmt.Errorf("tls: CA certificate %s is not a CA certificate", caCertPath)
	}
	caKey, err := readPrivateKey(caKeyPath, "CA key")
	if err != nil {
		return "", "", err
	}
	if !publicKeyMatches(caCert, caKey) {
		return "", "", fmt.Errorf("tls: CA key %s does not belong to CA certificate %s", caKeyPath, caCertPath)
	}

	sans := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, ip := range ips {
		if !slices.ContainsFunc(sans, ip.Equal) {
			sans = append(sans, ip)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("tls: generate node key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	notAfter := now.Add(nodeValidity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"Steward"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  sans,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("tls: sign node certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("tls: create %s: %w", dir, err)
	}
	certPath = filepath.Join(dir, nodeID+".pem")
	keyPath = filepath.Join(dir, nodeID+"-key.pem")
	if err := writeKeyPEM(keyPath, key); err != nil {
		return "", "", err
	}
	if err := writeNewFile(certPath, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

// LoadTLSConfig reads this node's certificate and key and the cluster CA
// and returns a mutual TLS configuration for agent-to-agent traffic: TLS 1.2
// or later, this node's certificate presented as server and as client,
// peers' certificates verified against the CA both ways, and client
// certificates required. Each error names the file at fault: unreadable,
// not PEM, a key that does not match the certificate, a key file others can
// read, a certificate not signed by the CA or outside its validity.
func LoadTLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	leaf, err := readCertificate(certFile, "certificate")
	if err != nil {
		return nil, err
	}
	keyPEM, err := readSecretFile(keyFile, "key")
	if err != nil {
		return nil, err
	}
	certPEM, _ := os.ReadFile(certFile) // read successfully just above
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s and key %s: %w", certFile, keyFile, err)
	}

	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", caFile)
	}

	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:     pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("tls: certificate %s does not verify against CA %s: %w", certFile, caFile, err)
	}

	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// verifyServerName checks that this node's own certificate in conf carries
// name, since its peers verify that name when they dial it
// (-tls-server-name): better refused at start than by every peer.
func verifyServerName(conf *tls.Config, name string) error {
	if len(conf.Certificates) == 0 || len(conf.Certificates[0].Certificate) == 0 {
		return errors.New("no certificate loaded")
	}
	leaf, err := x509.ParseCertificate(conf.Certificates[0].Certificate[0])
	if err != nil {
		return err
	}
	if err := leaf.VerifyHostname(name); err != nil {
		return fmt.Errorf("this node's certificate is not valid for %q (issue it with agent tls cert -dns %s): %w", name, name, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("tls: serial number: %w", err)
	}
	return serial, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeKeyPEM writes key as PKCS #8 PEM with mode 0600.
func writeKeyPEM(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("tls: encode key: %w", err)
	}
	return writeNewFile(path, pemBlock("PRIVATE KEY", der), 0o600)
}

// writeNewFile creates path with mode perm and writes data; it fails if
// path exists.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("tls: %s already exists; not overwriting it", path)
		}
		return fmt.Errorf("tls: %w", err)
	}
	// The umask may have cleared bits of perm, never added any; set it
	// exactly anyway.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("tls: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("tls: write %s: %w", path, err)
	}
	return nil
}

// readCertificate reads the first certificate of a PEM file; what names
// the file in errors ("certificate", "CA certificate").
func readCertificate(path, what string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %s file: %w", what, err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("tls: %s file %s holds no PEM certificate", what, path)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls: %s file %s: %w", what, path, err)
		}
		return cert, nil
	}
}

// readSecretFile reads a private key file, refusing one that users other
// than its owner can read or change (mode beyond 0600).
func readSecretFile(path, what string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %s file: %w", what, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("tls: %s file %s has mode %#o, which lets other users read or change it; chmod 600 it", what, path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %s file: %w", what, err)
	}
	return data, nil
}

// readPrivateKey reads a PEM private key (PKCS #8, SEC 1 EC or PKCS #1).
func readPrivateKey(path, what string) (any, error) {
	data, err := readSecretFile(path, what)
	if err != nil {
		return nil, err
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("tls: %s file %s holds no PEM private key", what, path)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tls: %s file %s: %w", what, path, err)
		}
		return key, nil
	}
}

// publicKeyMatches reports whether key is the private half of cert's
// public key.
func publicKeyMatches(cert *x509.Certificate, key any) bool {
	signer, ok := key.(crypto.Signer)
	if !ok {
		return false
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(signer.Public())
}
