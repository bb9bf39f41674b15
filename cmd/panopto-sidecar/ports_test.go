package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports for parallel tests. A port found free by listening on :0 and
// closing again can be taken by any socket of a test running beside this
// one before the sidecar binds it; these helpers leave no such gap.
var ports struct {
	mu   sync.Mutex
	held map[string]net.Listener // bound by holdAddr, not yet taken by a sidecar
	used map[int]bool            // handed out by childAddr
}

func init() { listenTCP = takeHeld }

// takeHeld is serve's listen in tests: an address holdAddr bound is handed
// over as it is; any other is bound as usual.
func takeHeld(network, addr string) (net.Listener, error) {
	ports.mu.Lock()
	ln, ok := ports.held[addr]
	delete(ports.held, addr)
	ports.mu.Unlock()
	if ok {
		return ln, nil
	}
	return net.Listen(network, addr)
}

// holdAddr binds 127.0.0.1:0 and holds the listener until a sidecar in
// this process is configured to listen on the address it returns (listen or
// public_listen), which then serves on it. Unused, it is closed when the
// test ends.
func holdAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ports.mu.Lock()
	if ports.held == nil {
		ports.held = map[string]net.Listener{}
	}
	ports.held[addr] = ln
	ports.mu.Unlock()
	t.Cleanup(func() {
		if ln, err := takeHeldOnly(addr); err == nil {
			ln.Close()
		}
	})
	return addr
}

func takeHeldOnly(addr string) (net.Listener, error) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	ln, ok := ports.held[addr]
	if !ok {
		return nil, fmt.Errorf("%s is not held", addr)
	}
	delete(ports.held, addr)
	return ln, nil
}

// childAddr returns a 127.0.0.1 address for another process to listen on
// (the sidecar binary, a peer server), perhaps several times over. Its port
// lies below the kernel's ephemeral range (32768 and up on Linux), so no
// socket bound to :0 and no outgoing connection is ever given it, and no
// other test of this process gets it.
func childAddr(t testing.TB) string {
	t.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.used == nil {
		ports.used = map[int]bool{}
	}
	for range 200 {
		p := 20000 + rand.IntN(12000)
		if ports.used[p] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // some other program's
		}
		ln.Close()
		ports.used[p] = true
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// childPort is childAddr's port alone.
func childPort(t testing.TB) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(childAddr(t))
	return port
}
