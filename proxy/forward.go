package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync/atomic"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// reqInfo travels with a proxied request from serve to the Rewrite and
// ModifyResponse hooks and the retrying transport, in the request's
// context (see withInfo, infoFrom).
type reqInfo struct {
	opts    *Options
	route   *Route
	grant   *token.Grant   // nil unless route.Inject
	manager *token.Manager // nil unless route.Inject
	path    string         // the path as received, for the log (see loggedPath)
}

type infoKey struct{}

// withInfo returns ctx carrying info for the hooks further down.
func withInfo(ctx context.Context, info *reqInfo) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// infoFrom returns the reqInfo that serve attached; false for a request
// that did not come through serve.
func infoFrom(ctx context.Context) (*reqInfo, bool) {
	info, ok := ctx.Value(infoKey{}).(*reqInfo)
	return info, ok && info != nil
}

type forwarder struct {
	h  *Handler
	rp *httputil.ReverseProxy
	// last caches the Authorization value of the most recent grant, so the
	// hot path does not build "Bearer "+token for every request. Header
	// values are never modified in place, so the slice is shared safely.
	last atomic.Pointer[bearerValue]
}

type bearerValue struct {
	g *token.Grant
	v []string
}

func (f *forwarder) bearer(g *token.Grant) []string {
	if b := f.last.Load(); b != nil && b.g == g {
		return b.v
	}
	b := &bearerValue{g: g, v: []string{"Bearer " + g.AccessToken.Reveal()}}
	f.last.Store(b)
	return b.v
}

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

func (f *forwarder) serve(w http.ResponseWriter, r *http.Request, o *Options) {
	start := f.h.deps.Now()
	rw := &recorder{ResponseWriter: w}
	routeLabel := "none"
	path := loggedPath(r)
	defer func() {
		dur, code := f.h.deps.Now().Sub(start), rw.code()
		f.h.deps.Metrics.observe(routeLabel, code, dur)
		f.h.log.LogAttrs(r.Context(), levelFor(code), "request",
			slog.String("method", r.Method), slog.String("path", path), slog.Int("status", code),
			slog.Duration("dur", dur), slog.Int64("bytes", rw.n), slog.String("route", routeLabel))
	}()
	if !cleanPath(r.URL.Path, r.URL.EscapedPath()) {
		writeJSON(rw, http.StatusBadRequest, map[string]string{"error": "bad_path"})
		return
	}
	route := matchRoute(o.Routes, r.URL.Path, o.RoutesMatch)
	if route == nil {
		writeJSON(rw, http.StatusNotFound, map[string]string{"error": "no_route", "detail": "the path matches no configured route; nothing was forwarded"})
		return
	}
	routeLabel = route.Prefix
	info := &reqInfo{opts: o, route: route, path: path}
	if route.Inject {
		account := o.account(r)
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
	f.rp.ServeHTTP(rw, r.WithContext(withInfo(r.Context(), info)))
}

func notConnected(w http.ResponseWriter, o *Options, account string) {
	key, hint := o.loginHint(account)
	out := map[string]string{"error": "panopto_not_connected", key: hint}
	if account != "" && o.AccountsMode == token.AccountsLogin {
		out["account"] = account
	}
	writeJSON(w, http.StatusServiceUnavailable, out)
}

func (f *forwarder) rewrite(pr *httputil.ProxyRequest) {
	info, ok := infoFrom(pr.In.Context())
	if !ok {
		// Only serve hands requests to the reverse proxy, each with its
		// info. Without one there is no route and no upstream: the
		// outbound URL stays without scheme and host, the transport
		// refuses it, and the client gets 502. Nothing is forwarded.
		return
	}
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
	info, ok := infoFrom(resp.Request.Context())
	if resp.StatusCode == http.StatusTooManyRequests {
		f.h.deps.Metrics.throttled.Inc()
	}
	if ok && info.opts.RewriteUploadTarget && isSessionUpload(resp.Request) {
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
	path := loggedPath(r)
	if info, ok := infoFrom(r.Context()); ok {
		path = info.path // r may be the outbound request
	}
	f.h.log.Warn("upstream request failed", "err", err, "method", r.Method, "path", path)
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
