package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/proxy"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

type benchAccounts struct{ m *token.Manager }

func (a benchAccounts) Manager(context.Context, string) (*token.Manager, error) { return a.m, nil }

// benchWriter is a ResponseWriter that keeps nothing, so the benchmark
// counts the handler's allocations rather than a recorder's.
type benchWriter struct {
	h    http.Header
	code int
	n    int64
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(c int)           { w.code = c }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// benchHandler returns a sidecar handler holding a valid grant, in front of
// an httptest upstream that wants the bearer and answers 1 KiB of JSON.
func benchHandler(b *testing.B, logger *slog.Logger) *proxy.Handler {
	return benchHandlerWith(b, logger, nil)
}

// stubTransport answers every request with a canned 1 KiB response, so that
// allocations counted are the sidecar's own, not the upstream server's.
type stubTransport struct{ body []byte }

type bytesBody struct {
	p []byte
	i int
}

func (r *bytesBody) Read(p []byte) (int, error) {
	if r.i >= len(r.p) {
		return 0, io.EOF
	}
	n := copy(p, r.p[r.i:])
	r.i += n
	return n, nil
}
func (r *bytesBody) Close() error { return nil }

func (t stubTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "Bearer bench-access" {
		return &http.Response{StatusCode: 401, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	}
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          &bytesBody{p: t.body},
		ContentLength: int64(len(t.body)),
		Request:       req,
	}, nil
}

func benchHandlerWith(b *testing.B, logger *slog.Logger, tr http.RoundTripper) *proxy.Handler {
	b.Helper()
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'x'
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer bench-access" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(up.Close)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	store := token.NewFileStore(filepath.Join(b.TempDir(), "token.json"))
	now := time.Now()
	g := &token.Grant{AccessToken: "bench-access", RefreshToken: "bench-refresh", TokenType: "Bearer",
		Expiry: now.Add(time.Hour), ObtainedAt: now}
	if _, err := store.CompareAndSwap(ctx, "", 0, token.Record{Grant: g}); err != nil {
		b.Fatal(err)
	}
	ep := token.Endpoint{TokenURL: up.URL + "/unused", RefreshBefore: 5 * time.Minute}
	pool := token.NewPool(token.PoolOptions{Store: store, PoolSettings: token.PoolSettings{Endpoint: ep},
		Credentials: token.StaticCredentials{ID: "bench", Secret: "bench-secret"}})
	pool.Load(ctx)
	go pool.Run(ctx)
	m := pool.Default()
	u, _ := url.Parse(up.URL)
	if tr == nil {
		tr = proxy.NewTransport(proxy.TransportOptions{})
	}
	h := proxy.New(proxy.Deps{
		Accounts:    benchAccounts{m},
		Credentials: token.StaticCredentials{ID: "bench"},
		Flow:        login.NewLoginFlow(0, nil),
		Transport:   tr,
		Logger:      logger,
	}, proxy.Options{
		Upstream:       u,
		PublicURL:      "http://127.0.0.1:9127",
		Routes:         []proxy.Route{{Prefix: "/Panopto/api/", Inject: true}},
		Endpoint:       ep,
		AccountsMode:   token.AccountsOff,
		AccountsHeader: "X-Panopto-User",
		RetryBodyLimit: 1 << 20,
	})
	return h
}

// BenchmarkHandler serves a proxied GET through the whole Handler: route,
// token, rewrite, transport to a loopback upstream, response copy, metrics
// and the request log. "json-info" logs as the shipped config does (one
// JSON line per request, here to io.Discard); "discard" drops logging.
func BenchmarkHandler(b *testing.B) {
	for _, lc := range []struct {
		name string
		log  *slog.Logger
	}{
		{"log=json-info", slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))},
		{"log=discard", nil},
	} {
		b.Run(lc.name, func(b *testing.B) {
			h := benchHandler(b, lc.log)
			req := httptest.NewRequest(http.MethodGet, "/Panopto/api/v1/folders?pageSize=10", nil)
			req.Host = "127.0.0.1:9127"
			req.Header.Set("Accept", "application/json")
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			b.SetBytes(1024)
			for b.Loop() {
				clear(w.h)
				w.code, w.n = 0, 0
				h.ServeHTTP(w, req)
				if w.code != http.StatusOK || w.n != 1024 {
					b.Fatalf("answered %d with %d bytes", w.code, w.n)
				}
			}
		})
	}
}

// BenchmarkHandlerStub is BenchmarkHandler with the upstream replaced by a
// RoundTripper that answers from memory: it isolates the sidecar's own CPU
// and allocations per request (no sockets, no upstream server).
func BenchmarkHandlerStub(b *testing.B) {
	body := make([]byte, 1024)
	h := benchHandlerWith(b, slog.New(slog.NewJSONHandler(io.Discard, nil)), stubTransport{body})
	req := httptest.NewRequest(http.MethodGet, "/Panopto/api/v1/folders?pageSize=10", nil)
	req.Host = "127.0.0.1:9127"
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(1024)
	for b.Loop() {
		clear(w.h)
		w.code, w.n = 0, 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != 1024 {
			b.Fatalf("answered %d with %d bytes", w.code, w.n)
		}
	}
}

// BenchmarkHandlerParallel is the same with GOMAXPROCS concurrent callers.
func BenchmarkHandlerParallel(b *testing.B) {
	h := benchHandler(b, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	b.ReportAllocs()
	b.SetBytes(1024)
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest(http.MethodGet, "/Panopto/api/v1/folders", nil)
		req.Host = "127.0.0.1:9127"
		w := &benchWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			w.code, w.n = 0, 0
			h.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				b.Errorf("answered %d", w.code)
				return
			}
		}
	})
}
