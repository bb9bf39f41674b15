// Package upstream is the sidecar's HTTP/1.1 client to Panopto. It writes
// a request and reads its answer on the caller's goroutine; a request body
// is written from a second goroutine, so that an answer the upstream sends
// before it has read the whole body (a refusal mid-upload) is read while
// the body still streams. net/http's Transport instead hands every request
// to two goroutines per connection, and on a loopback sidecar those
// hand-offs cost more CPU than everything else the proxy does. Serialising
// and parsing stay net/http's own (Request.Write, http.ReadResponse); this
// package adds only the connection pool, timeouts and cancellation.
//
// The files follow the life of a request: transport.go picks a pool and
// retries a stale connection, pool.go keeps and dials connections, conn.go
// writes the request and reads the response head, body.go hands the
// connection back once the response body is done.
package upstream

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configure a Transport. A zero field takes the default named
// beside it.
type Options struct {
	Dialer                *net.Dialer   // nil: 10 s connect timeout, 30 s TCP keep-alive
	TLSConfig             *tls.Config   // cloned per connection; nil: TLS >= 1.2, system roots
	TLSHandshakeTimeout   time.Duration // 0: 10 s
	ResponseHeaderTimeout time.Duration // from the request's last byte to the response head; 0: no limit
	IdleConnTimeout       time.Duration // 0: 90 s
	MaxIdlePerHost        int           // 0: 256
	// Fallback carries what this transport does not: upgrade requests and
	// schemes other than http and https. nil: such requests fail.
	Fallback http.RoundTripper
}

// Transport is an http.RoundTripper with a keep-alive pool per upstream
// address. It is safe for concurrent use.
type Transport struct {
	dialer          *net.Dialer
	tlsConfig       *tls.Config
	tlsTimeout      time.Duration
	responseHeaders time.Duration
	idleTimeout     time.Duration
	maxIdlePerHost  int
	fallback        http.RoundTripper

	mu    sync.Mutex
	pools map[poolKey]*connPool
}

// New returns a Transport configured by o.
func New(o Options) *Transport {
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	}
	if o.TLSConfig == nil {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 256
	}
	return &Transport{
		dialer:          o.Dialer,
		tlsConfig:       o.TLSConfig,
		tlsTimeout:      o.TLSHandshakeTimeout,
		responseHeaders: o.ResponseHeaderTimeout,
		idleTimeout:     o.IdleConnTimeout,
		maxIdlePerHost:  o.MaxIdlePerHost,
		fallback:        o.Fallback,
	}
}

var errNoFallback = errors.New("upstream: no transport for upgrade requests or this scheme")

// RoundTrip sends req and returns the response head; the body streams from
// the connection, which goes back to the pool once the body is read to its
// end and closed.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	scheme := req.URL.Scheme
	if (scheme != "http" && scheme != "https") || req.Header.Get("Upgrade") != "" {
		if t.fallback == nil {
			closeRequestBody(req)
			return nil, errNoFallback
		}
		return t.fallback.RoundTrip(req)
	}
	if req.URL.Host == "" {
		closeRequestBody(req)
		return nil, errors.New("upstream request has no host")
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	pool := t.pool(scheme, req.URL.Host)
	for attempt := 0; ; attempt++ {
		// A request that cannot be sent twice, or is sent again because a
		// kept-alive connection was found closed, goes only on a
		// connection known to be open.
		pc, err := pool.get(req.Context(), t, attempt > 0 || !replayable(req, hasBody))
		if err != nil {
			closeRequestBody(req)
			return nil, err
		}
		resp, err := pc.roundTrip(req, hasBody)
		if err == nil {
			return resp, nil
		}
		var stale staleConnError
		if attempt == 0 && errors.As(err, &stale) && replayable(req, hasBody) {
			// The upstream closed a kept-alive connection as we reused it,
			// before answering: nothing was done, send it again.
			continue
		}
		return nil, err
	}
}

// replayable reports whether a request may be sent a second time when a
// reused connection turned out to be closed: no body, and a method with no
// effect beyond the first (RFC 9110 §9.2.2), as net/http's Transport does.
func replayable(req *http.Request, hasBody bool) bool {
	if hasBody {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// CloseIdleConnections closes the kept-alive connections no request is
// using, here and in the fallback.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	pools := make([]*connPool, 0, len(t.pools))
	for _, p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	for _, p := range pools {
		p.closeIdle()
	}
	if c, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type poolKey struct{ scheme, host string }

func (t *Transport) pool(scheme, host string) *connPool {
	key := poolKey{scheme, host}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.pools[key]
	if p == nil {
		if t.pools == nil {
			t.pools = map[poolKey]*connPool{}
		}
		p = &connPool{tls: scheme == "https", addr: hostPort(scheme, host), serverName: hostOnly(host)}
		t.pools[key] = p
	}
	return p
}

func hostPort(scheme, host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}
