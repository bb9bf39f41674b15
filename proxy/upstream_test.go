package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
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
	tr := NewTransport(TransportOptions{})
	t.Cleanup(tr.(*h1Transport).CloseIdleConnections)
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
	tr := NewTransport(TransportOptions{})
	t.Cleanup(tr.(*h1Transport).CloseIdleConnections)
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

// trackedBody is a request body that never ends by itself and records its
// Close.
type trackedBody struct {
	closed chan struct{}
	once   sync.Once
	sent   atomic.Int64
}

func (b *trackedBody) Read(p []byte) (int, error) {
	select {
	case <-b.closed:
		return 0, errors.New("read after close")
	default:
	}
	n := min(len(p), 16<<10)
	clear(p[:n])
	b.sent.Add(int64(n))
	return n, nil
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func TestUpstreamAnswersBeforeTheBodyEnds(t *testing.T) {
	srv, _ := countConns(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge) // refuses without reading
	}))
	tr := NewTransport(TransportOptions{})
	t.Cleanup(tr.(*h1Transport).CloseIdleConnections)
	body := &trackedBody{closed: make(chan struct{})}
	req, _ := http.NewRequest("PUT", srv.URL+"/big", body)
	req.ContentLength = -1
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	select {
	case <-body.closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the endless request body was never closed (%d bytes sent)", body.sent.Load())
	}
}

func TestUpstreamHeaderTimeoutStartsAfterTheBody(t *testing.T) {
	stall := make(chan struct{})
	srv, _ := countConns(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stall" {
			<-stall
		}
		fmt.Fprint(w, n)
	}))
	t.Cleanup(func() { close(stall) }) // before the server's Close, which waits for the handler
	tr := NewTransport(TransportOptions{ResponseHeaders: 150 * time.Millisecond})
	t.Cleanup(tr.(*h1Transport).CloseIdleConnections)

	// An upload that takes longer than the header timeout is not cut off:
	// the wait for the answer starts once it is sent.
	pr, pw := io.Pipe()
	go func() {
		for range 5 {
			time.Sleep(80 * time.Millisecond)
			pw.Write(make([]byte, 1000))
		}
		pw.Close()
	}()
	if _, got := roundTrip(t, tr, "POST", srv.URL+"/slow-upload", pr); got != "5000" {
		t.Fatalf("slow upload: %q", got)
	}

	// An upstream that never answers is given up on.
	req, _ := http.NewRequest("GET", srv.URL+"/stall", nil)
	_, err := tr.RoundTrip(req)
	if !isTimeout(err) {
		t.Fatalf("stalled upstream: %v, want a timeout", err)
	}
}

func TestUpstreamCancelMidBody(t *testing.T) {
	done := make(chan struct{})
	srv, _ := countConns(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the sidecar's cancellation closes the connection
		close(done)
	}))
	tr := NewTransport(TransportOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	resp.Body.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection stayed open after the request was cancelled")
	}
}

// rawUpstream answers every connection with the given bytes.
func rawUpstream(t *testing.T, answer string) string {
	t.Helper()
	return "http://" + tcpUpstream(t, func(c net.Conn) {
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, answer)
		io.Copy(io.Discard, c)
	})
}

func TestUpstreamInformationalAnswers(t *testing.T) {
	url := rawUpstream(t, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
	tr := NewTransport(TransportOptions{})
	t.Cleanup(tr.(*h1Transport).CloseIdleConnections)
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "final" {
		t.Fatalf("final answer %d %q", resp.StatusCode, body)
	}
	if len(got) != 1 || got[0] != "103 </style.css>; rel=preload" {
		t.Fatalf("1xx passed on: %q", got)
	}

	endless := rawUpstream(t, strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 10))
	req, _ = http.NewRequest("GET", endless, nil)
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "1xx") {
		t.Fatalf("ten 100 Continue: %v", err)
	}
}

func TestUpstreamHeaderSizeLimit(t *testing.T) {
	url := rawUpstream(t, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 2<<20)+"\r\nContent-Length: 0\r\n\r\n")
	tr := NewTransport(TransportOptions{})
	req, _ := http.NewRequest("GET", url, nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, errTooManyHeaderBytes) {
		t.Fatalf("2 MiB header: %v, want %v", err, errTooManyHeaderBytes)
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
	tr := NewTransport(TransportOptions{RootCAs: roots})
	t.Cleanup(tr.(*h1Transport).CloseIdleConnections)
	url := strings.Replace(srv.URL, "127.0.0.1", "example.com", 1)
	// Dial the test server whatever the name says, so SNI and verification
	// use the name (httptest's certificate holds example.com).
	tr.(*h1Transport).pool("https", strings.TrimPrefix(url, "https://")).addr = strings.TrimPrefix(srv.URL, "https://")
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
	bad := NewTransport(TransportOptions{})
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
	tr := NewTransport(TransportOptions{}).(*h1Transport)
	tr.idleTimeout = 100 * time.Millisecond
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
