package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// TestUpstreamDown: a closed port answers 502 with a generic body that
// says nothing about the upstream's address or the dial error.
func TestUpstreamDown(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}, connected: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	o := *e.h.Options()
	o.Upstream = &url.URL{Scheme: "http", Host: dead}
	e.h.Update(o)

	code, hdr, body := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil)
	if code != http.StatusBadGateway {
		t.Fatalf("answered %d: %s", code, body)
	}
	if m := jsonBody(t, body); m["error"] != "upstream_unavailable" || len(m) != 1 {
		t.Errorf("502 body %v", m)
	}
	if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type %q", hdr.Get("Content-Type"))
	}
	_, port, _ := net.SplitHostPort(dead)
	for _, leak := range []string{port, "127.0.0.1", "dial", "refused", "connect"} {
		if bytes.Contains(body, []byte(leak)) {
			t.Errorf("502 body reveals %q: %s", leak, body)
		}
	}
	// The detail goes to the log instead.
	if !strings.Contains(e.logs.String(), "upstream request failed") {
		t.Error("the failure was not logged")
	}
	if v := counter(e.scrape(), "panopto_sidecar_requests_total", "route", "/Panopto/api/", "code", "502"); v != 1 {
		t.Errorf("requests_total{code=502} = %v", v)
	}
}

// TestUpstreamSlowHeaders: an upstream that does not answer within the
// transport's ResponseHeaders timeout gives 504.
func TestUpstreamSlowHeaders(t *testing.T) {
	release := make(chan struct{})
	up := &recordingUpstream{handle: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}}
	e := newEnv(t, envConfig{upstream: up, connected: true, transport: TransportOptions{ResponseHeaders: 200 * time.Millisecond}})
	t.Cleanup(func() { close(release) })
	code, _, body := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil)
	if code != http.StatusGatewayTimeout {
		t.Fatalf("answered %d: %s", code, body)
	}
	if m := jsonBody(t, body); m["error"] != "upstream_unavailable" {
		t.Errorf("504 body %v", m)
	}
}

const streamSize = 64 << 20

func patternHash(n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, panoptofake.PatternReader(n))
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// heapWatch samples the live heap while a transfer runs.
type heapWatch struct {
	base  uint64
	total uint64
	peak  atomic.Uint64
}

func newHeapWatch() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w := &heapWatch{base: ms.HeapAlloc, total: ms.TotalAlloc}
	w.peak.Store(ms.HeapAlloc)
	return w
}

func (w *heapWatch) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for {
		p := w.peak.Load()
		if ms.HeapAlloc <= p || w.peak.CompareAndSwap(p, ms.HeapAlloc) {
			return
		}
	}
}

// check fails if the heap grew, at any sample, by more than a quarter of
// the body, or if more than half the body's size was allocated in all.
func (w *heapWatch) check(t *testing.T, size int64) {
	t.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	growth := int64(w.peak.Load()) - int64(w.base)
	allocated := int64(ms.TotalAlloc - w.total)
	t.Logf("heap growth at peak %d KiB, allocated %d KiB for a %d MiB body", growth>>10, allocated>>10, size>>20)
	if growth > size/4 {
		t.Errorf("heap grew by %d MiB while streaming %d MiB: the body is buffered", growth>>20, size>>20)
	}
	if allocated > size/2 {
		t.Errorf("%d MiB allocated while streaming %d MiB: the body is buffered", allocated>>20, size>>20)
	}
}

// sampler is an io.Writer that samples the heap every 4 MiB written.
type sampler struct {
	w    *heapWatch
	next int64
	n    int64
}

func (s *sampler) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.n >= s.next {
		s.w.sample()
		s.next = s.n + 4<<20
	}
	return len(p), nil
}

// A 64 MiB POST to an echo upstream: the bytes come back intact, the
// upstream reads the first MiB while the client is still sending (the
// client waits for that before sending the rest), and the heap stays flat.
// A chunked body on an inject route is held back only until it is known
// to exceed RetryBodyLimit (here 256 KiB, below the first MiB).
func TestStreamingUpload(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length int64 // request Content-Length; -1 chunked
	}{{"content-length", streamSize}, {"chunked", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			const head = 1 << 20
			upstreamSawHead := make(chan struct{})
			var upstreamGot atomic.Int64
			up := &recordingUpstream{raw: func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				_ = rc.EnableFullDuplex()
				w.Header().Set("Content-Type", "application/octet-stream")
				w.WriteHeader(http.StatusOK)
				_ = rc.Flush()
				buf := make([]byte, 64<<10)
				signalled := false
				for {
					n, err := r.Body.Read(buf)
					if n > 0 {
						if _, werr := w.Write(buf[:n]); werr != nil {
							return
						}
						if upstreamGot.Add(int64(n)) >= head && !signalled {
							signalled = true
							close(upstreamSawHead)
						}
					}
					if err != nil {
						return
					}
				}
			}}
			e := newEnv(t, envConfig{upstream: up, connected: true, retry: 256 << 10})
			want := patternHash(streamSize)
			watch := newHeapWatch()

			pr, pw := io.Pipe()
			sendErr := make(chan error, 1)
			go func() {
				src := panoptofake.PatternReader(streamSize)
				if _, err := io.CopyN(pw, src, head); err != nil {
					sendErr <- err
					return
				}
				select {
				case <-upstreamSawHead:
				case <-time.After(20 * time.Second):
					err := errors.New("the upstream saw no bytes while the client was still sending: the proxy buffers the request body")
					pw.CloseWithError(err)
					sendErr <- err
					return
				}
				_, err := io.Copy(io.MultiWriter(pw, &sampler{w: watch}), src)
				pw.CloseWithError(err)
				sendErr <- err
			}()
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/Panopto/api/v1/echo", pr)
			req.ContentLength = tc.length
			req.Header.Set("Content-Type", "application/octet-stream")
			resp := e.do(req)
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("answered %d", resp.StatusCode)
			}
			h := sha256.New()
			n, err := io.Copy(io.MultiWriter(h, &sampler{w: watch}), resp.Body)
			if serr := <-sendErr; serr != nil {
				t.Fatalf("sending: %v", serr)
			}
			if err != nil || n != streamSize {
				t.Fatalf("echo: %d bytes, %v", n, err)
			}
			if [32]byte(h.Sum(nil)) != want {
				t.Fatal("the echoed bytes differ from the bytes sent")
			}
			watch.check(t, streamSize)
			if up.n.Load() != 1 {
				t.Errorf("upstream received %d requests", up.n.Load())
			}
		})
	}
}

// A 64 MiB GET: the client receives the first bytes before the upstream
// writes the rest (the upstream waits for that), the bytes are intact and
// the heap stays flat.
func TestStreamingDownload(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setLength bool
	}{{"content-length", true}, {"chunked", false}} {
		t.Run(tc.name, func(t *testing.T) {
			const head = 1 << 20
			clientGotHead := make(chan struct{})
			upErr := make(chan error, 1)
			up := &recordingUpstream{raw: func(w http.ResponseWriter, r *http.Request) {
				src := panoptofake.PatternReader(streamSize)
				if tc.setLength {
					w.Header().Set("Content-Length", "67108864")
				}
				w.Header().Set("Content-Type", "video/mp4")
				w.WriteHeader(http.StatusOK)
				if _, err := io.CopyN(w, src, head); err != nil {
					upErr <- err
					return
				}
				_ = http.NewResponseController(w).Flush()
				select {
				case <-clientGotHead:
				case <-time.After(20 * time.Second):
					upErr <- errors.New("the client got nothing while the upstream was still sending: the proxy buffers the response")
					panic(http.ErrAbortHandler)
				}
				_, err := io.Copy(w, src)
				upErr <- err
			}}
			e := newEnv(t, envConfig{upstream: up, connected: true})
			want := patternHash(streamSize)
			watch := newHeapWatch()
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/Panopto/api/v1/stream?bytes=67108864", nil)
			resp := e.do(req)
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("answered %d", resp.StatusCode)
			}
			h := sha256.New()
			sink := io.MultiWriter(h, &sampler{w: watch})
			if _, err := io.CopyN(sink, resp.Body, head/2); err != nil {
				t.Fatalf("first bytes: %v", err)
			}
			close(clientGotHead)
			n, err := io.Copy(sink, resp.Body)
			if uerr := <-upErr; uerr != nil {
				t.Fatalf("upstream: %v", uerr)
			}
			if err != nil || n+head/2 != streamSize {
				t.Fatalf("download: %d bytes, %v", n+head/2, err)
			}
			if [32]byte(h.Sum(nil)) != want {
				t.Fatal("the downloaded bytes differ from the bytes served")
			}
			watch.check(t, streamSize)
		})
	}
}

// A response written in chunks reaches the client chunk by chunk: the
// upstream writes each chunk only after the client has read the previous one.
func TestStreamingFlushesChunks(t *testing.T) {
	chunks := []string{"event: one\n", "event: two\n", "event: last\n"}
	ack := make(chan struct{})
	upErr := make(chan error, 1)
	up := &recordingUpstream{raw: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i, c := range chunks {
			_, _ = io.WriteString(w, c)
			_ = http.NewResponseController(w).Flush()
			if i == len(chunks)-1 {
				break
			}
			select {
			case <-ack:
			case <-time.After(10 * time.Second):
				upErr <- errors.New("chunk " + c + " did not reach the client before the next was written")
				return
			}
		}
		upErr <- nil
	}}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/Panopto/api/v1/events", nil)
	resp := e.do(req)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i, want := range chunks {
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("chunk %d: %q, %v", i, line, err)
		}
		if i < len(chunks)-1 {
			ack <- struct{}{}
		}
	}
	if err := <-upErr; err != nil {
		t.Fatal(err)
	}
}
