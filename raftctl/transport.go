package raftctl

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tcpStreamLayer is raft's StreamLayer over plain TCP. raft's own
// NewTCPTransport does the same, but it needs the advertised address before
// it listens, so it cannot advertise "the port actually bound" when the bind
// port is 0 and an advertise host is given; listening first lets us.
type tcpStreamLayer struct {
	net.Listener
	advertise net.Addr
}

var _ raft.StreamLayer = (*tcpStreamLayer)(nil)

// listenTCP listens on bind and works out the address to advertise.
func listenTCP(bind, advertise string) (*tcpStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raftctl: listen on %s: %w", bind, err)
	}
	bound := ln.Addr().(*net.TCPAddr)
	adv, err := advertiseAddr(bound, advertise)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return &tcpStreamLayer{Listener: ln, advertise: adv}, nil
}

// advertiseAddr resolves the address peers should dial: advertise if given
// (with port 0 meaning the bound port), else the bound address, which must
// then be a specific IP.
func advertiseAddr(bound *net.TCPAddr, advertise string) (*net.TCPAddr, error) {
	if advertise == "" {
		if bound.IP == nil || bound.IP.IsUnspecified() {
			return nil, fmt.Errorf("raftctl: bound to %s, which peers cannot dial: set AdvertiseAddr", bound)
		}
		return bound, nil
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raftctl: AdvertiseAddr %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raftctl: AdvertiseAddr %q is not an address peers can dial", advertise)
	}
	if adv.Port == 0 {
		adv.Port = bound.Port
	}
	return adv, nil
}

// Dial opens a connection to a peer.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", string(address))
}

// Addr is the advertised address (raft's LocalAddr comes from it).
func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }
