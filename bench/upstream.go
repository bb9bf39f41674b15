//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// Paths served by the fast upstream. They sit under /Panopto/api/, an inject
// route of the sidecar's default configuration.
const (
	pathSmall  = "/Panopto/api/v1/bench"
	pathSink   = "/Panopto/api/v1/sink"
	pathSource = "/Panopto/api/v1/source"
	tokenPath  = "/Panopto/oauth2/connect/token"
)

// upstream is the fast API server every target forwards to. It accepts a
// bearer that is either the static token given to nginx and Caddy (and to
// the direct runs) or an access token that the token server says is active.
type upstream struct {
	static string
	fake   atomic.Pointer[panoptofake.Server] // nil: only the static token is accepted
	body   []byte

	mu    sync.Mutex
	valid map[string]time.Time // token -> when TokenActive last said yes

	ok, unauthorized atomic.Int64
	srv              *http.Server
	addr             string
}

// smallBody is a 1 KiB JSON document.
func smallBody() []byte {
	var b bytes.Buffer
	b.WriteString(`{"Results":[`)
	for i := 0; b.Len() < 1000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"Id":"6f3c2a1e-7b4d-4c1a-9e2f-%012d","Name":"Folder %d"}`, i, i)
	}
	b.WriteString(`]`)
	for b.Len() < 1023 {
		b.WriteByte(' ')
	}
	b.WriteString(`}`)
	return b.Bytes()[:1024]
}

func newUpstream(static string) *upstream {
	return &upstream{static: static, body: smallBody(), valid: map[string]time.Time{}}
}

// authorized checks the bearer. An issued token's positive answer is cached
// for 50 ms so the token server's lock stays off the hot path while an
// expired or revoked token is still caught promptly.
func (u *upstream) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	if tok == u.static {
		return true
	}
	fake := u.fake.Load()
	if fake == nil {
		return false
	}
	now := time.Now()
	u.mu.Lock()
	t, seen := u.valid[tok]
	u.mu.Unlock()
	if seen && now.Sub(t) < 50*time.Millisecond {
		return true
	}
	if !fake.TokenActive(tok) {
		return false
	}
	u.mu.Lock()
	u.valid[tok] = now
	u.mu.Unlock()
	return true
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !u.authorized(r) {
		u.unauthorized.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":"invalid_token"}`)
		return
	}
	u.ok.Add(1)
	switch {
	case r.URL.Path == pathSmall && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1024")
		w.Write(u.body)
	case r.URL.Path == pathSink && r.Method == http.MethodPost:
		buf := make([]byte, 256<<10)
		n, err := io.CopyBuffer(io.Discard, r.Body, buf)
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"bytes":%d}`, n)
	case r.URL.Path == pathSource && r.Method == http.MethodGet:
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bytes=N", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		buf := make([]byte, 256<<10)
		for n > 0 {
			k := min(int64(len(buf)), n)
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	default:
		http.NotFound(w, r)
	}
}

func (u *upstream) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	u.addr = ln.Addr().String()
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go u.srv.Serve(ln)
	return nil
}

// tokenServer is the Panopto stand-in serving only OAuth2, wrapped so that
// every token-endpoint call is timed.
type tokenServer struct {
	fake         *panoptofake.Server
	clientID     string
	clientSecret string
	srv          *http.Server
	addr         string

	mu    sync.Mutex
	calls []tokenCall
}

type tokenCall struct {
	start, end time.Time
	status     int
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(c int) {
	if s.code == 0 {
		s.code = c
	}
	s.ResponseWriter.WriteHeader(c)
}

func newTokenServer(ttl time.Duration, redirectURI string) *tokenServer {
	sec := make([]byte, 16)
	_, _ = rand.Read(sec)
	t := &tokenServer{clientID: "panopto-sidecar-bench", clientSecret: hex.EncodeToString(sec)}
	t.fake = panoptofake.New(panoptofake.Options{
		ClientID:     t.clientID,
		ClientSecret: t.clientSecret,
		RedirectURIs: []string{redirectURI},
		AccessTTL:    ttl,
		DefaultUser:  "bench.lecturer",
	})
	return t
}

func (t *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/Panopto/oauth2/") {
		http.NotFound(w, r) // the API is the fast upstream's job
		return
	}
	if r.URL.Path != tokenPath {
		t.fake.ServeHTTP(w, r)
		return
	}
	c := tokenCall{start: time.Now()}
	sw := &statusWriter{ResponseWriter: w}
	t.fake.ServeHTTP(sw, r)
	c.end = time.Now()
	c.status = sw.code
	if c.status == 0 {
		c.status = http.StatusOK
	}
	t.mu.Lock()
	t.calls = append(t.calls, c)
	t.mu.Unlock()
}

func (t *tokenServer) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	t.addr = ln.Addr().String()
	t.srv = &http.Server{Handler: t, ReadHeaderTimeout: 10 * time.Second}
	go t.srv.Serve(ln)
	return nil
}

// callsSince returns the token calls that started at or after since.
func (t *tokenServer) callsSince(since time.Time) []tokenCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []tokenCall
	for _, c := range t.calls {
		if !c.start.Before(since) {
			out = append(out, c)
		}
	}
	return out
}

func (t *tokenServer) base() string { return "http://" + t.addr }
