// Package proxy is the HTTP side of panopto-sidecar: route matching, the
// reverse proxy that injects the current bearer, the login and callback
// endpoints, health, readiness, status and metrics.
package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options is the part of the proxy's behaviour that a config reload can
// change. Handler holds it as an immutable snapshot.
type Options struct {
	Upstream            *url.URL    // scheme://host[:port], no path
	PublicURL           string      // scheme://host[:port][/prefix] the browser and OnTrack use
	Routes              []Route     // first matching prefix wins
	RoutesMatch         RoutesMatch // how a path matches a prefix; "" is case-insensitive
	Endpoint            token.Endpoint
	AccountsMode        token.AccountsMode
	AccountsHeader      string // always stripped before forwarding
	RewriteUploadTarget bool
	RetryBodyLimit      int64 // request bodies up to this size are kept to retry after a 401
	// RequireBrowserBinding makes /redirect demand the cookie /-/login set.
	RequireBrowserBinding bool
	// SharedSecret, when set, must arrive in SharedSecretHeader on every
	// request except /-/healthz and /-/ready.
	SharedSecret       token.Secret
	SharedSecretHeader string
	// UploadPartSize and UploadConcurrency shape POST /-/uploads (0: defaults).
	UploadPartSize    int64
	UploadConcurrency int
	// UploadMemoryLimit is the one budget of every upload's part buffers,
	// and UploadQueueTimeout the longest wait for a first one (0: defaults).
	UploadMemoryLimit  int64
	UploadQueueTimeout time.Duration
	// Connect: per-student connection (accounts.mode login).
	Connect ConnectOptions
	// PublicListen: public_url names the public listener (public_listen),
	// which serves ticketed logins only; no answer offers its /-/login.
	PublicListen bool
	// AllowedHosts are the names, besides loopback names, the address a
	// connection came in on and public_url's host, that the Host header
	// may carry: "name" with any port, "name:port" with that port only.
	// Any other Host is answered 421 (browser.go).
	AllowedHosts []string
}

// account names the account a request is for: the accounts header's value
// when tokens are per account, "" (the default grant) otherwise.
func (o *Options) account(r *http.Request) string {
	if o.AccountsMode == token.AccountsOff {
		return ""
	}
	return r.Header.Get(o.AccountsHeader)
}

// Accounts hands out the token manager for an account ("" is the default
// grant). It creates account managers on first use where the mode allows.
type Accounts interface {
	Manager(ctx context.Context, account string) (*token.Manager, error)
}

// ErrUnknownAccount is returned by Accounts for an account that has no grant
// and cannot get one without a login.
var ErrUnknownAccount = token.ErrUnknownAccount

// Deps are the handler's long-lived collaborators.
type Deps struct {
	Accounts    Accounts
	Credentials token.CredentialSource // the credential source in force (for the login's client id)
	Flow        *login.LoginFlow
	Transport   http.RoundTripper // to the upstream
	Logger      *slog.Logger
	Metrics     *Metrics
	// Status adds fields to /-/status (config generation, credentials, vault).
	Status func() map[string]any
	// Logout revokes a refresh token at Panopto; optional.
	Revoke func(ctx context.Context, g *token.Grant) error
	Now    func() time.Time
	// Connect: login tickets and id_token verification.
	Connect ConnectDeps
	// Disconnected lists the accounts that must connect again (GET
	// /-/accounts?state=disconnected); nil when the store cannot list.
	Disconnected func(ctx context.Context, after string, limit int) (names []string, next string, err error)
	// Watcher follows uploads and keeps their Idempotency-Keys; nil: no
	// watching (keys are checked and ignored).
	Watcher Watcher
}

// Handler serves every endpoint of the sidecar's listener.
type Handler struct {
	deps    Deps
	opts    atomic.Pointer[Options]
	fwd     *forwarder
	metrics http.Handler
	log     *slog.Logger
	started time.Time
	ups     uploaders
	conn    connectState
	own     *endpoints // the listener's own paths
	public  *endpoints // the public listener's
}

// New returns a handler with the given options.
func New(d Deps, o Options) *Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Transport == nil {
		d.Transport = NewTransport(TransportOptions{})
	}
	h := &Handler{deps: d, log: d.Logger, started: d.Now()}
	h.opts.Store(&o)
	h.ups.budget = newUploadBudget(d.Metrics, o.UploadMemoryLimit)
	h.fwd = newForwarder(h)
	h.own = newEndpoints(h.patterns())
	h.public = newEndpoints(h.publicPatterns())
	h.metrics = promhttp.HandlerFor(d.Metrics.Registry, promhttp.HandlerOpts{})
	return h
}

// Update swaps the options; requests already in flight finish with the old
// ones.
func (h *Handler) Update(o Options) {
	h.ups.budget.SetLimit(o.UploadMemoryLimit)
	h.opts.Store(&o)
}

// Options returns the options in force.
func (h *Handler) Options() *Options { return h.opts.Load() }

// patterns are the listener's own endpoints (see mux.go). Every other
// path goes to the forwarder.
func (h *Handler) patterns() []pattern {
	return []pattern{
		{"GET /{$}", h.index}, // unless a route forwards "/" (ServeHTTP)
		{"GET /-/healthz", h.healthz},
		{"GET /-/ready", h.ready},
		{"GET /-/status", h.status},
		{"GET /metrics", func(w http.ResponseWriter, r *http.Request, _ *Options) { h.metrics.ServeHTTP(w, r) }},
		{"GET /-/login", h.login},
		{"GET /redirect", h.callback},
		{"POST /-/logout", h.logout},
		{"POST /-/connect", h.connect},
		{"GET /-/accounts", h.accounts},
		{"GET /-/accounts/{account}", h.account},
		{"DELETE /-/accounts/{account}", h.disconnect},
		{"POST /-/uploads", h.uploadCreate},
		{"GET /-/uploads/{id}", h.uploadStatus},
	}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := h.opts.Load()
	if h.refuseMalformed(w, r) || h.refuseForeign(w, r, o) {
		return
	}
	p := r.URL.Path
	escaped, own := h.own.match(p)
	if own && p == "/" && matchRoute(o.Routes, p, o.RoutesMatch) != nil {
		// A route forwards "/". Otherwise nothing is forwarded from "/":
		// an operator who opens the listener's address finds where to go.
		own = false
	}
	if p != "/-/healthz" && p != "/-/ready" && (h.refuseUnauthorized(w, r, o) || h.refuseContentType(w, r)) {
		return
	}
	if !own {
		h.fwd.serve(w, r, o)
		return
	}
	h.own.serve(w, r, p, escaped, o)
}

// refuseUnauthorized answers 401 a request without the shared secret, when
// one is set, and reports whether it did.
func (h *Handler) refuseUnauthorized(w http.ResponseWriter, r *http.Request, o *Options) bool {
	if o.SharedSecret.IsZero() {
		return false
	}
	got := r.Header.Get(o.SharedSecretHeader)
	if subtle.ConstantTimeCompare([]byte(got), []byte(o.SharedSecret.Reveal())) == 1 {
		return false
	}
	h.refused(r, http.StatusUnauthorized, "missing or wrong shared secret")
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
	return true
}

// refuseMalformed answers requests no listener serves, logs them with their
// path as received, and reports whether it did.
func (h *Handler) refuseMalformed(w http.ResponseWriter, r *http.Request) bool {
	// Absolute-form request targets (a client treating us as a forward
	// proxy) and CONNECT are refused: only the configured upstream is ever
	// contacted, and only through a route.
	if r.Method == http.MethodConnect || !strings.HasPrefix(r.RequestURI, "/") {
		h.refused(r, http.StatusBadRequest, "not an origin-form request target")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "detail": "only origin-form request targets are accepted"})
		return true
	}
	if reason, refused := framingRefusal(r); refused {
		// Ambiguous framing (see FramingGuard): a smuggling attempt or a
		// broken client. Refuse it, and the connection with it.
		h.refused(r, http.StatusBadRequest, reason)
		w.Header().Set("Connection", "close")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "detail": "ambiguous request framing: " + reason})
		return true
	}
	return false
}

// refused logs a request turned away before any route was looked at, with
// its path as received.
func (h *Handler) refused(r *http.Request, code int, reason string) {
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "request refused",
		slog.String("method", r.Method), slog.String("path", loggedPath(r)),
		slog.Int("status", code), slog.String("reason", reason))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request, _ *Options) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *Handler) defaultManager(ctx context.Context) *token.Manager {
	m, err := h.deps.Accounts.Manager(ctx, "")
	if err != nil {
		return nil
	}
	return m
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request, o *Options) {
	m := h.defaultManager(r.Context())
	if m == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": "no token manager"})
		return
	}
	if ok, reason := m.Ready(); !ok {
		key, hint := o.loginHint("")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "not_ready", "reason": reason, key: hint,
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// status answers /-/status: the default grant's token.Status fields at the
// top level (each once; no zero times), then the sidecar's. With ?account=
// it answers one account's grant, its fields at the top level the same way.
func (h *Handler) status(w http.ResponseWriter, r *http.Request, o *Options) {
	if account := r.URL.Query().Get("account"); account != "" {
		// One account's grant, asked for by name (names are never listed).
		m, err := h.deps.Accounts.Manager(r.Context(), account)
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown_account"})
			return
		}
		out, err := statusFields(m.Status())
		if err != nil {
			h.log.Error("status: encode the grant's status", "err", err, "account", account)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal"})
			return
		}
		out["account"] = account
		key, hint := o.loginHint(account)
		out[key] = hint
		writeJSON(w, http.StatusOK, out)
		return
	}
	out := map[string]any{}
	if m := h.defaultManager(r.Context()); m != nil {
		var err error
		if out, err = statusFields(m.Status()); err != nil {
			h.log.Error("status: encode the grant's status", "err", err)
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal"})
			return
		}
	}
	out["upstream"] = o.Upstream.String()
	key, hint := o.loginHint("")
	out[key] = hint
	out["uptime_seconds"] = int64(h.deps.Now().Sub(h.started).Seconds())
	out["pending_logins"] = h.deps.Flow.Pending()
	if h.deps.Status != nil {
		for k, v := range h.deps.Status() {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// statusFields returns st's fields as its JSON encoding has them (times not
// known are left out), to merge into an answer.
func statusFields(st token.Status) (map[string]any, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	out := make(map[string]any, len(fields)+8)
	for k, v := range fields {
		out[k] = v
	}
	return out, nil
}
