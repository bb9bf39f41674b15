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
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// h1Transport is the HTTP/1.1 client to the upstream. It writes a request
// and reads its answer on the caller's goroutine; a request body is written
// from a second goroutine, so that an answer the upstream sends before it
// has read the whole body (a refusal mid-upload) is read while the body
// still streams. net/http's Transport instead hands every request to two
// goroutines per connection, and on a loopback sidecar those hand-offs cost
// more CPU than everything else the proxy does. Serialising and parsing
// stay net/http's own (Request.Write, http.ReadResponse); this type adds
// only the connection pool, timeouts and cancellation.
//
// Upgrade requests and schemes other than http and https go to fallback.
type h1Transport struct {
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

type poolKey struct{ scheme, host string }

// maxResponseHeaderBytes bounds what an upstream may send before the body.
const maxResponseHeaderBytes = 1 << 20

// max1xx bounds the informational answers before the final one.
const max1xx = 5

var errTooManyHeaderBytes = fmt.Errorf("upstream response headers exceed %d bytes", maxResponseHeaderBytes)

func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	scheme := req.URL.Scheme
	if (scheme != "http" && scheme != "https") || req.Header.Get("Upgrade") != "" {
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

// CloseIdleConnections closes the kept-alive connections no request is using.
func (t *h1Transport) CloseIdleConnections() {
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

func (t *h1Transport) pool(scheme, host string) *connPool {
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

// connPool keeps one upstream address's idle connections, most recently
// used last (so oldest first), so the busiest connections stay warm and
// the rest age out.
type connPool struct {
	tls        bool
	addr       string
	serverName string

	mu    sync.Mutex
	idle  []*upstreamConn
	sweep *time.Timer // set while idle connections wait to expire
}

func (p *connPool) get(ctx context.Context, t *h1Transport, mustBeOpen bool) (*upstreamConn, error) {
	for {
		pc := p.popIdle(t.idleTimeout)
		if pc == nil {
			return p.dial(ctx, t)
		}
		if mustBeOpen && !pc.stillOpen() {
			pc.close()
			continue
		}
		return pc, nil
	}
}

func (p *connPool) popIdle(idleTimeout time.Duration) *upstreamConn {
	p.mu.Lock()
	var pc *upstreamConn
	if n := len(p.idle); n > 0 {
		pc = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()
	if pc != nil && idleTimeout > 0 && time.Since(pc.idleSince) > idleTimeout {
		pc.close()
		return p.popIdle(idleTimeout)
	}
	return pc
}

func (p *connPool) put(pc *upstreamConn, t *h1Transport) {
	pc.idleSince, pc.reused = time.Now(), true
	p.mu.Lock()
	keep := len(p.idle) < t.maxIdlePerHost
	if keep {
		p.idle = append(p.idle, pc)
		if p.sweep == nil && t.idleTimeout > 0 {
			// Close connections left idle past the timeout even when no
			// request comes to notice.
			p.sweep = time.AfterFunc(t.idleTimeout, func() { p.expire(t.idleTimeout) })
		}
	}
	p.mu.Unlock()
	if !keep {
		pc.close()
	}
}

// expire closes the connections idle longer than idleTimeout and waits
// for the next one to expire, while any are left.
func (p *connPool) expire(idleTimeout time.Duration) {
	now := time.Now()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleSince) > idleTimeout {
		i++
	}
	expired := append([]*upstreamConn(nil), p.idle[:i]...)
	p.idle = append(p.idle[:0], p.idle[i:]...)
	if len(p.idle) > 0 {
		p.sweep.Reset(idleTimeout - now.Sub(p.idle[0].idleSince) + time.Millisecond)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, pc := range expired {
		pc.close()
	}
}

func (p *connPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
}

func (p *connPool) dial(ctx context.Context, t *h1Transport) (*upstreamConn, error) {
	raw, err := t.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	if p.tls {
		cfg := t.tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = p.serverName
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(raw, cfg)
		hctx, cancel := context.WithTimeout(ctx, t.tlsTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", p.addr, err)
		}
		nc = tc
	}
	pc := &upstreamConn{t: t, pool: p, nc: nc, raw: raw}
	pc.lr.r = nc
	pc.br = bufio.NewReaderSize(&pc.lr, 32<<10)
	pc.bw = bufio.NewWriterSize(nc, 32<<10)
	return pc, nil
}

// upstreamConn is one connection to the upstream, used by one request at a
// time.
type upstreamConn struct {
	t    *h1Transport
	pool *connPool
	nc   net.Conn // what requests are written to (TLS or TCP)
	raw  net.Conn // the TCP connection under it
	lr   countingReader
	br   *bufio.Reader
	bw   *bufio.Writer

	idleSince time.Time
	reused    bool

	// mu orders deadline changes: a cancelled request's deadline in the
	// past is never undone, and the body writer starts the wait for
	// headers only if they have not arrived yet.
	mu          sync.Mutex
	interrupted bool
	headersIn   bool
	closeOnce   sync.Once
}

// countingReader counts what the connection delivered and, while armed,
// refuses to deliver more than a limit (the response headers' budget).
type countingReader struct {
	r       io.Reader
	n       int64
	limit   int64 // 0: no limit
	limitAt int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit > 0 {
		left := c.limitAt + c.limit - c.n
		if left <= 0 {
			return 0, errTooManyHeaderBytes
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// staleConnError is a reused connection that ended before any byte of an
// answer arrived.
type staleConnError struct{ err error }

func (e staleConnError) Error() string {
	return "upstream closed a kept-alive connection: " + e.err.Error()
}
func (e staleConnError) Unwrap() error { return e.err }

var aLongTimeAgo = time.Unix(1, 0)

func (pc *upstreamConn) interrupt() {
	pc.mu.Lock()
	pc.interrupted = true
	_ = pc.nc.SetDeadline(aLongTimeAgo)
	pc.mu.Unlock()
}

// awaitHeaders starts the wait for the response headers, unless they are in.
func (pc *upstreamConn) awaitHeaders() {
	pc.mu.Lock()
	if !pc.interrupted && !pc.headersIn && pc.t.responseHeaders > 0 {
		_ = pc.nc.SetReadDeadline(time.Now().Add(pc.t.responseHeaders))
	}
	pc.mu.Unlock()
}

func (pc *upstreamConn) gotHeaders() {
	pc.mu.Lock()
	pc.headersIn = true
	if !pc.interrupted {
		_ = pc.nc.SetReadDeadline(time.Time{})
	}
	pc.mu.Unlock()
}

func (pc *upstreamConn) close() {
	pc.closeOnce.Do(func() { pc.nc.Close() })
}

func (pc *upstreamConn) write(req *http.Request) error {
	if err := req.Write(pc.bw); err != nil {
		return err
	}
	return pc.bw.Flush()
}

func (pc *upstreamConn) roundTrip(req *http.Request, hasBody bool) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		pc.pool.put(pc, pc.t)
		closeRequestBody(req)
		return nil, err
	}
	pc.headersIn = false
	stop := context.AfterFunc(ctx, pc.interrupt)
	start := pc.lr.n
	var wrote chan error
	if hasBody {
		// The answer may come before the body is all sent; the wait for it
		// starts once the body is written.
		wrote = make(chan error, 1)
		go func() {
			err := pc.write(req)
			if err != nil {
				pc.close() // unblock the reader: there will be no answer
			} else {
				pc.awaitHeaders()
			}
			wrote <- err
		}()
	} else {
		if err := pc.write(req); err != nil {
			stop()
			pc.close()
			return nil, pc.failure(ctx, err, pc.lr.n == start)
		}
		pc.awaitHeaders()
	}
	resp, err := pc.readResponse(req)
	if err != nil {
		stop()
		pc.close()
		if wrote != nil {
			select {
			case werr := <-wrote:
				if werr != nil && ctx.Err() == nil {
					err = werr // the body failed first: that is the cause
				}
			default:
			}
		}
		return nil, pc.failure(ctx, err, pc.lr.n == start)
	}
	pc.gotHeaders()
	b := &upstreamBody{pc: pc, ctx: ctx, body: resp.Body, stop: stop, wrote: wrote,
		reusable: !resp.Close && !req.Close, empty: resp.Body == http.NoBody}
	resp.Body = b
	return resp, nil
}

// failure maps a connection error to what the caller should see: its own
// cancellation, a stale kept-alive connection, or the error itself.
func (pc *upstreamConn) failure(ctx context.Context, err error, nothingRead bool) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if pc.reused && nothingRead && !errors.Is(err, errTooManyHeaderBytes) && !isTimeout(err) {
		return staleConnError{err}
	}
	return err
}

func (pc *upstreamConn) readResponse(req *http.Request) (*http.Response, error) {
	for n1xx := 0; ; n1xx++ {
		pc.lr.limitAt, pc.lr.limit = pc.lr.n-int64(pc.br.Buffered()), maxResponseHeaderBytes
		resp, err := http.ReadResponse(pc.br, req)
		pc.lr.limit = 0
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream switched protocols on a request that asked for no upgrade")
		}
		if code >= 200 {
			return resp, nil
		}
		// An informational answer (100 Continue, 103 Early Hints) before
		// the final one: passed on as net/http's Transport does.
		if n1xx >= max1xx {
			return nil, errors.New("upstream sent too many 1xx informational responses")
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// upstreamBody hands its connection back to the pool once the answer was
// read to its end, the request was written whole and nobody cancelled;
// otherwise it closes the connection.
type upstreamBody struct {
	pc       *upstreamConn
	ctx      context.Context
	body     io.ReadCloser
	stop     func() bool
	wrote    chan error
	reusable bool
	empty    bool
	sawEOF   bool // set by Read only
	done     atomic.Bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.sawEOF {
			return 0, io.EOF
		}
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.sawEOF = true
		b.finish(true)
	} else if err != nil {
		b.finish(false)
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr // the request was cancelled: say so, not "i/o timeout"
		}
	}
	return n, err
}

func (b *upstreamBody) Close() error {
	b.finish(b.empty)
	return nil
}

func (b *upstreamBody) finish(atEOF bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	pc := b.pc
	stopped := b.stop()
	if !atEOF || !stopped || !b.reusable || pc.br.Buffered() > 0 || (b.wrote != nil && !bodySent(b.wrote)) {
		pc.close() // this also ends a body writer still at work
		return
	}
	pc.pool.put(pc, pc.t)
}

// bodySent reports whether the request body writer finished without error.
// With the answer complete it is usually about to report; an upstream that
// answered early may instead have stopped reading the body, and then the
// connection cannot be kept.
func bodySent(wrote chan error) bool {
	select {
	case err := <-wrote:
		return err == nil
	default:
	}
	timer := time.NewTimer(writerWait)
	defer timer.Stop()
	select {
	case err := <-wrote:
		return err == nil
	case <-timer.C:
		return false
	}
}

// writerWait is how long a complete answer waits for its request's body
// writer to report before the connection is given up rather than kept.
const writerWait = 50 * time.Millisecond
