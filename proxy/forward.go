package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/oauth"
)

// reqInfo travels with a proxied request from ServeHTTP to the Rewrite hook
// and the transport.
type reqInfo struct {
	opts    *Options
	route   *Route
	grant   *oauth.Grant
	manager *oauth.Manager
	retried bool
}

type ctxKey struct{}

type forwarder struct {
	h  *Handler
	rp *httputil.ReverseProxy
	// last caches the Authorization value of the most recent grant, so the
	// hot path does not build "Bearer "+token for every request. Header
	// values are never modified in place, so the slice is shared safely.
	last atomic.Pointer[bearerValue]
}

type bearerValue struct {
	g *oauth.Grant
	v []string
}

func (f *forwarder) bearer(g *oauth.Grant) []string {
	if b := f.last.Load(); b != nil && b.g == g {
		return b.v
	}
	b := &bearerValue{g: g, v: []string{"Bearer " + g.AccessToken.Reveal()}}
	f.last.Store(b)
	return b.v
}

// bufferPool recycles the buffers ReverseProxy copies bodies with.
// A channel free list (unlike sync.Pool with a []byte) costs no allocation
// per Put.
type bufferPool struct{ free chan []byte }

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.free:
		return buf
	default:
		return make([]byte, copyBufSize)
	}
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < copyBufSize {
		return
	}
	select {
	case b.free <- buf[:copyBufSize]:
	default: // enough spares; let it go
	}
}

// copyBufSize is the chunk bodies are copied in: large enough that a 2 GiB
// stream costs few system calls, small enough that hundreds of concurrent
// streams stay within a few tens of MiB.
const copyBufSize = 64 << 10

var copyBuffers = &bufferPool{free: make(chan []byte, 128)}

func newForwarder(h *Handler) *forwarder {
	f := &forwarder{h: h}
	f.rp = &httputil.ReverseProxy{
		Rewrite:        f.rewrite,
		Transport:      &retryTransport{base: h.deps.Transport, h: h},
		ModifyResponse: f.modifyResponse,
		ErrorHandler:   f.errorHandler,
		BufferPool:     copyBuffers,
		// Body-copy failures (an upstream reset mid-response) are logged
		// through the sidecar's logger, not the standard library's global one.
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	return f
}

// matchRoute returns the first route whose prefix starts path.
func matchRoute(routes []Route, path string) *Route {
	for i := range routes {
		if strings.HasPrefix(path, routes[i].Prefix) {
			return &routes[i]
		}
	}
	return nil
}

// cleanPath reports whether a request path is safe to forward: absolute, no
// dot segments, no empty segments, no backslash, NUL or line break, and no
// encoded dot, slash or backslash that an upstream might decode into a path
// outside the route, even if it decodes the path once or twice more.
func cleanPath(decoded, raw string) bool {
	if !safeSegments(decoded) {
		return false
	}
	if strings.IndexByte(raw, '%') < 0 {
		return true
	}
	lower := strings.ToLower(raw)
	for _, bad := range []string{"%2e", "%2f", "%5c", "%00"} {
		if strings.Contains(lower, bad) {
			return false
		}
	}
	// A literal "%" may stay (S3 keys hold one), but what further decoding
	// makes of the path must be as safe as the path itself.
	cur := decoded
	for range 3 {
		if strings.IndexByte(cur, '%') < 0 {
			break
		}
		next, err := url.PathUnescape(cur)
		if err != nil || next == cur {
			break
		}
		if !safeSegments(next) || strings.Count(next, "/") != strings.Count(cur, "/") {
			return false
		}
		cur = next
	}
	return true
}

func safeSegments(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00\r\n") || strings.Contains(p, "//") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func (f *forwarder) serve(w http.ResponseWriter, r *http.Request, o *Options) {
	start := f.h.deps.Now()
	rw := &recorder{ResponseWriter: w}
	routeLabel := "none"
	defer func() {
		dur, code := f.h.deps.Now().Sub(start), rw.code()
		f.h.deps.Metrics.observe(routeLabel, code, dur)
		f.h.log.LogAttrs(r.Context(), levelFor(code), "request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", code),
			slog.Duration("dur", dur), slog.Int64("bytes", rw.n), slog.String("route", routeLabel))
	}()
	if !cleanPath(r.URL.Path, r.URL.EscapedPath()) {
		writeJSON(rw, http.StatusBadRequest, map[string]string{"error": "bad_path"})
		return
	}
	route := matchRoute(o.Routes, r.URL.Path)
	if route == nil {
		writeJSON(rw, http.StatusNotFound, map[string]string{"error": "no_route", "detail": "the path matches no configured route; nothing was forwarded"})
		return
	}
	routeLabel = route.Prefix
	info := &reqInfo{opts: o, route: route}
	if route.Inject {
		account := ""
		if o.AccountsMode != "off" && o.AccountsMode != "" {
			account = r.Header.Get(o.AccountsHeader)
		}
		m, err := f.h.deps.Accounts.Manager(r.Context(), account)
		if err != nil {
			notConnected(rw, o, account)
			return
		}
		g, err := m.Token(r.Context())
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			notConnected(rw, o, account)
			return
		}
		info.grant, info.manager = g, m
	}
	if r.ContentLength != 0 {
		// Let the upstream's answer flow back while the request body is
		// still arriving (uploads, echo-style APIs): without this an HTTP/1
		// server drops the unread body once the response starts.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	f.rp.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
}

func notConnected(w http.ResponseWriter, o *Options, account string) {
	login := o.PublicURL + "/-/login"
	if account != "" {
		login += "?account=" + url.QueryEscape(account)
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "panopto_not_connected", "login_url": login})
}

func (f *forwarder) rewrite(pr *httputil.ProxyRequest) {
	info := pr.In.Context().Value(ctxKey{}).(*reqInfo)
	o := info.opts
	pr.SetURL(o.Upstream)
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.SetXForwarded()
	h := pr.Out.Header
	if o.AccountsHeader != "" {
		delete(h, http.CanonicalHeaderKey(o.AccountsHeader))
	}
	if o.SharedSecretHeader != "" {
		delete(h, http.CanonicalHeaderKey(o.SharedSecretHeader))
	}
	if info.route.Inject {
		h["Authorization"] = f.bearer(info.grant)
		delete(h, "Cookie") // the browser's cookies for the sidecar are not Panopto's
	}
	if o.RewriteUploadTarget && isSessionUpload(pr.In) {
		pr.Out.Header.Del("Accept-Encoding") // an identity body can be rewritten
		rewriteRequestBody(pr.Out, o)
	}
}

func (f *forwarder) modifyResponse(resp *http.Response) error {
	info, _ := resp.Request.Context().Value(ctxKey{}).(*reqInfo)
	if resp.StatusCode == http.StatusTooManyRequests {
		f.h.deps.Metrics.throttled.Inc()
	}
	if info != nil && info.opts.RewriteUploadTarget && isSessionUpload(resp.Request) {
		rewriteResponseBody(resp, info.opts)
	}
	return nil
}

func (f *forwarder) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody is left to answer.
		w.WriteHeader(499)
		return
	}
	f.h.log.Warn("upstream request failed", "err", err, "method", r.Method, "path", r.URL.Path)
	code := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		code = http.StatusGatewayTimeout
	}
	writeJSON(w, code, map[string]string{"error": "upstream_unavailable"})
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// retryTransport sends the request and, when the upstream refuses the bearer
// we injected (401, or 403 on PublicAPI as Panopto's own sample assumes),
// forces a refresh and retries once, if the body can be replayed.
type retryTransport struct {
	base http.RoundTripper
	h    *Handler
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	info, _ := req.Context().Value(ctxKey{}).(*reqInfo)
	if info == nil || !info.route.Inject {
		return t.base.RoundTrip(req)
	}
	body, replay := t.prepareReplay(req, info.opts.RetryBodyLimit)
	resp, err := t.base.RoundTrip(req)
	if err != nil || !refusesBearer(resp.StatusCode, info.route) {
		return resp, err
	}
	if !replay {
		t.h.deps.Metrics.unretryable.Inc()
		// The answer passes through, but the next requests should not meet
		// the same refused token: replace it in the background.
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), time.Minute)
			defer cancel()
			_, _ = info.manager.ForceRefresh(ctx, info.grant)
		}()
		return resp, nil
	}
	ng, ferr := info.manager.ForceRefresh(req.Context(), info.grant)
	if ferr != nil {
		t.h.deps.Metrics.retries.WithLabelValues("refresh_failed").Inc()
		t.h.log.Warn("upstream refused the bearer and no new token could be obtained", "status", resp.StatusCode, "err", ferr)
		return resp, nil
	}
	drain(resp.Body)
	retry := req.Clone(req.Context())
	retry.Header.Set("Authorization", "Bearer "+ng.AccessToken.Reveal())
	if body != nil {
		retry.Body = io.NopCloser(bytes.NewReader(body))
		retry.ContentLength = int64(len(body))
	}
	resp2, err := t.base.RoundTrip(retry)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	} else if refusesBearer(resp2.StatusCode, info.route) {
		outcome = "refused_again"
	}
	t.h.deps.Metrics.retries.WithLabelValues(outcome).Inc()
	return resp2, err
}

func refusesBearer(code int, r *Route) bool {
	return code == http.StatusUnauthorized || (code == http.StatusForbidden && strings.Contains(r.Prefix, "/PublicAPI/"))
}

// prepareReplay keeps the request body in memory when it is small enough
// to send twice. It returns the bytes (nil for no body) and whether a retry
// is possible.
func (t *retryTransport) prepareReplay(req *http.Request, limit int64) ([]byte, bool) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return nil, true
	}
	if limit <= 0 || req.ContentLength > limit {
		return nil, false
	}
	buf := make([]byte, 0, min(max(req.ContentLength, 512), limit+1))
	b := bytes.NewBuffer(buf)
	n, err := io.CopyN(b, req.Body, limit+1)
	if err != nil && err != io.EOF {
		// The client's body failed: send what we have and let the error
		// surface through the transport.
		req.Body = readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), req.Body), req.Body}
		return nil, false
	}
	if n > limit {
		req.Body = readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), req.Body), req.Body}
		return nil, false
	}
	req.Body.Close()
	data := b.Bytes()
	req.Body = io.NopCloser(bytes.NewReader(data))
	req.ContentLength = int64(len(data))
	req.Header.Del("Transfer-Encoding")
	req.TransferEncoding = nil
	return data, true
}

type readCloser struct {
	io.Reader
	io.Closer
}

func drain(rc io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, rc, 64<<10)
	rc.Close()
}

// recorder captures the status and byte count for the request log and keeps
// http.Flusher and friends reachable through Unwrap.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) {
	// A 1xx (100 Continue, 103 Early Hints) precedes the real answer; only
	// 101 Switching Protocols is final.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(writerOnly{r.ResponseWriter}, src, buf)
	r.n += n
	return n, err
}

type writerOnly struct{ io.Writer }

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

func (m *Metrics) observe(route string, code int, d time.Duration) {
	m.child(route, code).Inc()
	m.histogram(route).Observe(d.Seconds())
}
