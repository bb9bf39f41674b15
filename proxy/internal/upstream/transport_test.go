package upstream

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countConns starts an upstream and counts the connections it accepted.
func countConns(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

func roundTrip(t *testing.T, tr http.RoundTripper, method, url string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp, string(b)
}

func TestUpstreamKeepsConnectionsAlive(t *testing.T) {
	srv, conns := countConns(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/chunked":
			w.Write([]byte("part one "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
		case "/upload":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d", n)
		default:
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
		}
	}))
	tr := New(Options{})
	t.Cleanup(tr.CloseIdleConnections)
	for i := range 20 {
		if _, got := roundTrip(t, tr, "GET", srv.URL+"/a", nil); got != "GET /a" {
			t.Fatalf("round %d: %q", i, got)
		}
		if resp, got := roundTrip(t, tr, "HEAD", srv.URL+"/a", nil); got != "" || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %d %q", resp.StatusCode, got)
		}
		if resp, _ := roundTrip(t, tr, "GET", srv.URL+"/empty", nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("204: %d", resp.StatusCode)
		}
		if _, got := roundTrip(t, tr, "GET", srv.URL+"/chunked", nil); got != "part one part two" {
			t.Fatalf("chunked: %q", got)
		}
		if _, got := roundTrip(t, tr, "POST", srv.URL+"/upload", strings.NewReader(strings.Repeat("x", 100<<10))); got != "102400" {
			t.Fatalf("upload: %q", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("100 sequential requests used %d connections, want 1", n)
	}
}

// closingUpstream answers each connection's first request with a complete
// response and closes the connection without saying so (no
// "Connection: close"), as an upstream whose keep-alive timeout just
// passed does. closed receives after each close.
func closingUpstream(t *testing.T) (addr string, requests chan string, closed chan struct{}) {
	t.Helper()
	requests, closed = make(chan string, 16), make(chan struct{}, 16)
	addr = tcpUpstream(t, func(c net.Conn) {
		defer func() { c.Close(); closed <- struct{}{} }()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		requests <- req.Method
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	return addr, requests, closed
}

// tcpUpstream listens on loopback and hands every connection to serve, on
// its own goroutine.
func tcpUpstream(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func TestUpstreamClosedIdleConnection(t *testing.T) {
	addr, requests, closed := closingUpstream(t)
	tr := New(Options{})
	t.Cleanup(tr.CloseIdleConnections)
	url := "http://" + addr + "/x"

	roundTrip(t, tr, "GET", url, nil)
	<-closed
	// A GET on the pooled, now closed connection is sent again on a new one.
	if resp, got := roundTrip(t, tr, "GET", url, nil); resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("GET after the upstream closed: %d %q", resp.StatusCode, got)
	}
	<-closed
	// A POST cannot be sent twice: the closed connection is noticed before
	// it is written to.
	if resp, got := roundTrip(t, tr, "POST", url, strings.NewReader("payload")); resp.StatusCode != 200 || got != "ok" {
		t.Fatalf("POST after the upstream closed: %d %q", resp.StatusCode, got)
	}
	<-closed
	var got []string
	for len(requests) > 0 {
		got = append(got, <-requests)
	}
	if strings.Join(got, ",") != "GET,GET,POST" {
		t.Fatalf("upstream saw %v, want GET,GET,POST (each once)", got)
	}
}

func TestUpstreamTLS(t *testing.T) {
	var protos sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		fmt.Fprint(w, r.TLS.ServerName)
	}))
	srv.EnableHTTP2 = true
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	tr := New(Options{TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}})
	t.Cleanup(tr.CloseIdleConnections)
	url := strings.Replace(srv.URL, "127.0.0.1", "example.com", 1)
	// Dial the test server whatever the name says, so SNI and verification
	// use the name (httptest's certificate holds example.com).
	tr.pool("https", strings.TrimPrefix(url, "https://")).addr = strings.TrimPrefix(srv.URL, "https://")
	for range 3 {
		if _, got := roundTrip(t, tr, "GET", url+"/", nil); got != "example.com" {
			t.Fatalf("SNI %q, want example.com", got)
		}
	}
	if _, ok := protos.Load("HTTP/1.1"); !ok {
		t.Fatal("no HTTP/1.1 request arrived")
	}
	if _, ok := protos.Load("HTTP/2.0"); ok {
		t.Fatal("an HTTP/2 request arrived; the transport speaks HTTP/1.1")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 requests over TLS used %d connections", n)
	}

	// A certificate the roots do not vouch for is refused.
	bad := New(Options{})
	req, _ := http.NewRequest("GET", srv.URL, nil)
	var cerr *tls.CertificateVerificationError
	if _, err := bad.RoundTrip(req); !errors.As(err, &cerr) {
		t.Fatalf("untrusted certificate: %v", err)
	}
}

func TestUpstreamIdleConnectionsExpire(t *testing.T) {
	closed, arrived := make(chan struct{}, 8), make(chan struct{}, 8)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		fmt.Fprint(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tr := New(Options{IdleConnTimeout: 100 * time.Millisecond})
	// Two connections at once, then nothing: both are closed by the
	// transport once idle for the timeout, with no request to notice.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			<-release
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	<-arrived
	<-arrived // both requests are out, each holding its own connection
	close(release)
	wg.Wait()
	for i := range 2 {
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 2 idle connections closed after 10 s (idle timeout 100 ms)", i)
		}
	}
	pool := tr.pool("http", strings.TrimPrefix(srv.URL, "http://"))
	pool.mu.Lock()
	n := len(pool.idle)
	pool.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d connections still in the pool", n)
	}
}
