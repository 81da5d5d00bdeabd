package raftctl

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Every connection on the raft port, raft's own RPCs included, can start
// with a challenge-response handshake on a key every agent of the cluster
// derives from a secret they already share (Config.ClusterSecrets: the
// gossip keys, or the API token). It is what keeps a stranger who reaches
// the port from forwarding a write, answering for a dead peer's pings or
// speaking raft when there is no TLS; with TLS it is a second, independent
// check.
//
//	client: kindAuth, client nonce (16 bytes)
//	server: authOK, server nonce (16), HMAC(key, serverLabel | client nonce | server nonce)
//	client: HMAC(key, clientLabel | client nonce | server nonce)
//	server: authOK                      (then the connection goes on as usual)
//
// Either side may instead answer authRefused, a 2-byte length and a
// sentence saying why, and close. Fresh nonces on both sides make a
// recorded handshake useless for another connection, the distinct labels
// keep one side's answer from being reflected as the other's, and each side
// proves its key with its primary one while accepting any key of its ring,
// so that a gossip key can be rotated (install, use, remove) with every
// agent still talking. The handshake neither encrypts nor protects the
// connection afterwards against someone who can rewrite traffic in flight:
// that is what TLS is for.
const (
	kindAuth    byte = 0xFA
	authOK      byte = 0x00
	authRefused byte = 0x01

	authNonceSize = 16
	authMACSize   = sha256.Size
	// maxRefusalText bounds the sentence of a refusal read from a peer.
	maxRefusalText = 1024
)

var (
	clusterKeyLabel = []byte("steward raft port key v1")
	serverLabel     = []byte("steward raft port server v1")
	clientLabel     = []byte("steward raft port client v1")
)

// ErrUnauthenticated is returned when a peer's raft port refuses this
// node's cluster key, or the peer cannot prove it holds one of ours.
var ErrUnauthenticated = errors.New("raftctl: not authenticated with the cluster key")

// refusal texts, sent to the peer and logged here.
const (
	refuseNoHandshake = "this raft port requires the cluster-key handshake; the agents must share the gossip key (or the API token when gossip is not encrypted)"
	refuseBadKey      = "the cluster key does not match; the agents must share the gossip key (or the API token when gossip is not encrypted)"
	refuseNoKey       = "this agent has no cluster key (no gossip key and no API token), so it cannot check the handshake; give every agent the same gossip key"
	refuseServerKey   = "the peer does not hold the cluster key; the agents must share the gossip key (or the API token when gossip is not encrypted)"
)

// ClusterKey derives the raft port's key from a shared secret: HMAC-SHA256
// of a fixed label under the secret. The secret itself never goes into a
// MAC on the wire, so what the raft port shows says nothing usable about
// the gossip key.
func ClusterKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(clusterKeyLabel)
	return m.Sum(nil)
}

// clusterKeys derives the keys of the current secrets, primary first; nil
// when secrets is nil or returns none.
func clusterKeys(secrets func() [][]byte) [][]byte {
	if secrets == nil {
		return nil
	}
	var keys [][]byte
	for _, s := range secrets() {
		if len(s) > 0 {
			keys = append(keys, ClusterKey(s))
		}
	}
	return keys
}

func handshakeMAC(key, label, clientNonce, serverNonce []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(label)
	m.Write(clientNonce)
	m.Write(serverNonce)
	return m.Sum(nil)
}

// macMatchesAny reports whether mac is the handshake MAC under one of keys,
// comparing in constant time.
func macMatchesAny(keys [][]byte, mac, label, clientNonce, serverNonce []byte) bool {
	ok := false
	for _, k := range keys {
		if hmac.Equal(mac, handshakeMAC(k, label, clientNonce, serverNonce)) {
			ok = true
		}
	}
	return ok
}

// clientHandshake proves keys[0] to the server on conn and checks that the
// server holds one of keys. The caller bounds it with a deadline on conn.
func clientHandshake(conn net.Conn, keys [][]byte) error {
	hello := make([]byte, 1+authNonceSize)
	hello[0] = kindAuth
	rand.Read(hello[1:]) // never fails (crypto/rand, Go 1.24+)
	clientNonce := hello[1:]
	if _, err := conn.Write(hello); err != nil {
		return err
	}
	if err := readAuthStatus(conn); err != nil {
		return err
	}
	challenge := make([]byte, authNonceSize+authMACSize)
	if _, err := io.ReadFull(conn, challenge); err != nil {
		return err
	}
	serverNonce, serverMAC := challenge[:authNonceSize], challenge[authNonceSize:]
	if !macMatchesAny(keys, serverMAC, serverLabel, clientNonce, serverNonce) {
		return fmt.Errorf("%w: %s", ErrUnauthenticated, refuseServerKey)
	}
	if _, err := conn.Write(handshakeMAC(keys[0], clientLabel, clientNonce, serverNonce)); err != nil {
		return err
	}
	return readAuthStatus(conn)
}

// readAuthStatus reads authOK, or a refusal and returns it as an error.
func readAuthStatus(r io.Reader) error {
	var status [1]byte
	if _, err := io.ReadFull(r, status[:]); err != nil {
		return err
	}
	switch status[0] {
	case authOK:
		return nil
	case authRefused:
		var size [2]byte
		if _, err := io.ReadFull(r, size[:]); err != nil {
			return fmt.Errorf("%w: refused by the peer", ErrUnauthenticated)
		}
		text := make([]byte, min(int(binary.BigEndian.Uint16(size[:])), maxRefusalText))
		n, _ := io.ReadFull(r, text)
		return fmt.Errorf("%w: refused by the peer: %s", ErrUnauthenticated, text[:n])
	default:
		return fmt.Errorf("%w: the peer answered the handshake with byte %#x (an agent of another version, or not an agent)", ErrUnauthenticated, status[0])
	}
}

// writeRefusal tells the peer why its connection is refused. Best effort:
// the connection is closed next anyway.
func writeRefusal(w io.Writer, why string) {
	msg := []byte{authRefused}
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(why)))
	w.Write(append(msg, why...))
}

// serverHandshake runs the server's side of the handshake, its first byte
// (kindAuth) already read. It returns the reason to log when the peer is
// refused (and has been told), "" when it is in.
func serverHandshake(conn net.Conn, keys [][]byte) (refused string, err error) {
	clientNonce := make([]byte, authNonceSize)
	if _, err := io.ReadFull(conn, clientNonce); err != nil {
		return "", err
	}
	if len(keys) == 0 {
		writeRefusal(conn, refuseNoKey)
		return refuseNoKey, nil
	}
	challenge := make([]byte, 1+authNonceSize, 1+authNonceSize+authMACSize)
	challenge[0] = authOK
	rand.Read(challenge[1:])
	serverNonce := challenge[1:]
	challenge = append(challenge, handshakeMAC(keys[0], serverLabel, clientNonce, serverNonce)...)
	if _, err := conn.Write(challenge); err != nil {
		return "", err
	}
	clientMAC := make([]byte, authMACSize)
	if _, err := io.ReadFull(conn, clientMAC); errors.Is(err, io.EOF) {
		// A client that cannot check our proof hangs up here; so does one
		// whose deadline passed meanwhile (a ping of 150 ms on a starved
		// host), which a busy start-up of many agents shows by the dozen.
		return "the peer hung up after our challenge: it does not hold our cluster key, or it stopped waiting (a timeout)", nil
	} else if err != nil {
		return "", err
	}
	if !macMatchesAny(keys, clientMAC, clientLabel, clientNonce, serverNonce) {
		writeRefusal(conn, refuseBadKey)
		return refuseBadKey, nil
	}
	if _, err := conn.Write([]byte{authOK}); err != nil {
		return "", err
	}
	return "", nil
}

// refusalLog logs refused connections at most once per refusalLogInterval,
// with the count of those it did not log, so that a flood of strangers
// does not flood the log.
type refusalLog struct {
	logger     hclog.Logger
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const refusalLogInterval = 10 * time.Second

func (l *refusalLog) refused(remote, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < refusalLogInterval {
		l.suppressed++
		return
	}
	l.logger.Warn("refused a connection on the raft port", "remote", remote, "reason", why, "refused_since_last_logged", l.suppressed)
	l.last = now
	l.suppressed = 0
}
