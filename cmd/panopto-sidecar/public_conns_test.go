package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// TestPublicListenerConnectionCap: public_listen holds at most
// public_max_conns connections open; one more waits, unanswered, until a
// held one closes, and is then served.
func TestPublicListenerConnectionCap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pubAddr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{})
	cfg := baseConfig(pan.URL, dir) + fmt.Sprintf(`public_listen: %s
public_max_conns: 2
accounts: {mode: login, return_to: ["https://ontrack.example/panopto/"], identity_claim: preferred_username}
`, pubAddr)
	startSidecar(t, dir, holdAddr(t), cfg, nil)

	held := []net.Conn{healthzConn(t, pubAddr), healthzConn(t, pubAddr)}
	c, err := net.Dial("tcp", pubAddr) // completes in the kernel's accept queue
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /-/healthz HTTP/1.1\r\nHost: " + pubAddr + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection was served while two were held (public_max_conns: 2): %v", err)
	}
	held[0].Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served after one closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz on the waiting connection: %d", resp.StatusCode)
	}
	held[1].Close()
}

// healthzConn opens a connection to addr, is served one GET /-/healthz on
// it, and leaves it open and idle.
func healthzConn(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("GET /-/healthz HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// BenchmarkPublicIdleConns measures what 1,000 idle keep-alive connections
// cost the server, with bare net/http and with the public listener's
// wrapping (connection cap and request-smuggling guard): heap and stack
// in use per connection, client side included alike in both.
//
//	go test -run '^$' -bench PublicIdleConns -benchtime 1x ./cmd/panopto-sidecar/
func BenchmarkPublicIdleConns(b *testing.B) {
	const n = 1000
	for _, variant := range []string{"net-http", "public-listener"} {
		b.Run(variant, func(b *testing.B) {
			for range b.N {
				srv := &http.Server{
					Handler:        http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }),
					MaxHeaderBytes: 64 << 10,
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				if variant == "public-listener" {
					ln = publicListener(ln, 1024, srv)
				}
				go srv.Serve(ln)
				addr := ln.Addr().String()
				before := inUse()
				conns := make([]net.Conn, 0, n)
				for range n {
					conns = append(conns, healthzConn(b, addr))
				}
				after := inUse()
				b.ReportMetric(float64(after-before)/n, "B/conn")
				for _, c := range conns {
					c.Close()
				}
				srv.Close()
			}
		})
	}
}

// inUse is the heap and goroutine stack memory in use after a GC.
func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
