// Package freeport draws loopback TCP ports for processes that must know a
// port before they listen on it (a committee file names every member's
// address), and that listen on it again later (a node of the next epoch,
// a restarted sidecar).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
)

// Draw returns a loopback TCP port that was free a moment ago and that no
// earlier call in this process returned. It is drawn from the 10,000 ports
// below the kernel's ephemeral range when that leaves room: a port from
// that range (what listening on port 0 gives) can be taken meanwhile by any
// outgoing connection or port-0 listener on the machine.
func Draw() (int, error) {
	lo, hi := fixedRange()
	for range 200 {
		addr := "127.0.0.1:0"
		if hi > lo {
			addr = fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: draw again
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		given.Lock()
		_, taken := given.ports[port]
		if !taken {
			given.ports[port] = struct{}{}
		}
		given.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("freeport: no free loopback port found in 200 draws")
}

// fixedRange is the ports Draw draws from: the 10,000 below the ephemeral
// range, or none (ask the kernel) when the range starts too low to leave
// them.
func fixedRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil || first < 12_000 {
		return 0, 0
	}
	return first - 10_000, first
}

var given = struct {
	sync.Mutex
	ports map[int]struct{}
}{ports: make(map[int]struct{})}
