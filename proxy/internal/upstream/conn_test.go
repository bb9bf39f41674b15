package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	tr := New(Options{})
	t.Cleanup(tr.CloseIdleConnections)
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
	tr := New(Options{ResponseHeaderTimeout: 150 * time.Millisecond})
	t.Cleanup(tr.CloseIdleConnections)

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
	tr := New(Options{})
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
	tr := New(Options{})
	t.Cleanup(tr.CloseIdleConnections)
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
	tr := New(Options{})
	req, _ := http.NewRequest("GET", url, nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, errTooManyHeaderBytes) {
		t.Fatalf("2 MiB header: %v, want %v", err, errTooManyHeaderBytes)
	}
}
