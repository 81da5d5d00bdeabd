package localcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
)

// handedOut are the ports FreePort has returned in this process: the kernel
// may hand a port that was just closed out again, and a benchmark starts
// dozens of clusters.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// ErrNoFreePort is returned when no free port was found.
var ErrNoFreePort = errors.New("localcluster: no free port")

// FreePort returns a port free for TCP and UDP on 127.0.0.1 (gossip needs
// both), never one it returned before in this process.
func FreePort() (int, error) {
	low, high := portRange()
	for i := 0; i < 500; i++ {
		port := low + rand.IntN(high-low)
		handedOut.Lock()
		seen := handedOut.ports[port]
		handedOut.Unlock()
		if seen || !bindable(port) {
			continue
		}
		handedOut.Lock()
		handedOut.ports[port] = true
		handedOut.Unlock()
		return port, nil
	}
	return 0, ErrNoFreePort
}

// portRange is where FreePort picks: below the kernel's ephemeral range, so
// that no connection or port-0 listener (a test's own HTTP servers, any
// outgoing connection) is given a port between the moment FreePort checks
// it and the moment an agent binds it.
func portRange() (low, high int) {
	low, high = 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var eLow, eHigh int
		if _, err := fmt.Sscan(string(b), &eLow, &eHigh); err == nil && eLow > 12000 {
			high = eLow
			low = max(10000, eLow-12000)
		}
	}
	return low, high
}

// bindable reports whether port is free for both TCP and UDP on 127.0.0.1.
func bindable(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	u, err := net.ListenPacket("udp", addr)
	l.Close()
	if err != nil {
		return false
	}
	u.Close()
	return true
}
