package panoptofake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configures a Server. The zero value is usable: it registers no
// redirect URI, no users and no identity providers.
type Options struct {
	ClientID     string
	ClientSecret string
	// RedirectURIs are the registered redirect URIs; a match must be exact.
	RedirectURIs []string
	// AccessTTL is the access-token lifetime (default 3600 s).
	AccessTTL time.Duration
	// RefreshTTL, if positive, bounds a refresh token's lifetime. Zero means
	// refresh tokens live until rotated or revoked.
	RefreshTTL time.Duration
	// Users holds password-grant users: username -> password.
	Users map[string]string
	// IdentityProviders maps an identity provider name to its application key,
	// for the identity-provider password grant.
	IdentityProviders map[string]string
	// DefaultUser is the user the authorize endpoint auto-approves as when the
	// request carries no login_hint (default "panopto-admin").
	DefaultUser string
	// PublicAPI403 makes /Panopto/PublicAPI/ answer 403 instead of 401 for a
	// missing, unknown, expired or revoked bearer, as real Panopto sometimes does.
	PublicAPI403 bool
	// ProcessingPolls is the number of GETs of a completed sessionUpload before
	// its State becomes final (default 2).
	ProcessingPolls int
	// ProcessingDelay is how long, by Now, an upload stays Processing after
	// the client handed it over (PUT State=1), however often it is polled
	// (default 0: ProcessingPolls alone decides).
	ProcessingDelay time.Duration
	// PublicOrigin, if set (e.g. "https://panopto.example"), is the origin of
	// every UploadTarget. Otherwise the request's Host and TLS state decide.
	PublicOrigin string
	// S3SecretKey, if set, is the (dummy) secret every S3 signature version 2
	// request to the upload target must be signed with (403
	// SignatureDoesNotMatch otherwise). Other signatures are not checked.
	S3SecretKey string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives request logs (default: discard). Secrets are never logged.
	Logger *slog.Logger
}

// Stats counts what the server saw. Take a snapshot with Server.Stats.
type Stats struct {
	// TokenCalls counts token-endpoint calls by grant_type ("" for none),
	// including failed ones and ones answered by an injected fault.
	TokenCalls map[string]int
	// Issued counts access tokens issued.
	Issued int
	// Refreshes counts successful refresh_token grants.
	Refreshes int
	// RefreshReuse counts uses of an already-rotated refresh token.
	RefreshReuse int
	// CodeReuse counts uses of an already-redeemed authorization code.
	CodeReuse int
	// GrantsRevoked counts grants revoked, by reuse detection or revocation.
	GrantsRevoked int
	// Authorizes counts authorize-endpoint requests.
	Authorizes int
	// APICalls counts requests to /Panopto/api/ and /Panopto/PublicAPI/.
	APICalls int
	// Unauthorized and Forbidden count 401 and 403 answers on those routes.
	Unauthorized int
	Forbidden    int
	// InvalidClient counts token-endpoint client authentication failures.
	InvalidClient int
	// FaultsServed counts injected faults answered.
	FaultsServed int
	// UploadRequests counts requests to /Panopto/Upload/.
	UploadRequests int
	// UploadBearer counts upload-route requests that carried a bearer token.
	UploadBearer int
	// UploadSigV2 counts upload-route requests signed with S3 signature
	// version 2; UploadBadSignature those whose signature did not verify.
	UploadSigV2        int
	UploadBadSignature int
	// UploadRefused counts bodies refused for aws-chunked framing or trailers.
	UploadRefused int
}

// Server is an in-memory Panopto stand-in. It is an http.Handler; serve it
// with httptest.NewServer or a real listener. Safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	mux  *iisMux

	mu           sync.Mutex
	clientSecret string
	denyNext     bool
	tokenFaults  []Fault
	apiFaults    []Fault
	failFiles    map[string]string // FailProcessing: file name → message
	codes        map[string]*authCode
	grants       map[string]*grant
	access       map[string]*accessToken
	refresh      map[string]*refreshToken
	folders      []folder
	sessions     []session
	uploads      map[string]*upload
	oidc         oidcState
	stats        Stats
}

// New returns a Server with the options' defaults filled in and a few seeded
// folders and sessions.
func New(o Options) *Server {
	if o.AccessTTL <= 0 {
		o.AccessTTL = 3600 * time.Second
	}
	if o.ProcessingPolls <= 0 {
		o.ProcessingPolls = 2
	}
	if o.DefaultUser == "" {
		o.DefaultUser = "panopto-admin"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.PublicOrigin = strings.TrimRight(o.PublicOrigin, "/")
	s := &Server{
		opts:         o,
		log:          o.Logger.With("component", "panoptofake"),
		now:          o.Now,
		clientSecret: o.ClientSecret,
		codes:        map[string]*authCode{},
		grants:       map[string]*grant{},
		access:       map[string]*accessToken{},
		refresh:      map[string]*refreshToken{},
		uploads:      map[string]*upload{},
		stats:        Stats{TokenCalls: map[string]int{}},
	}
	s.seed()
	s.routes()
	return s
}

func (s *Server) routes() {
	m := newIISMux()
	m.HandleFunc("GET /Panopto/oauth2/.well-known/openid-configuration", s.discovery)
	m.HandleFunc("GET /Panopto/oauth2/.well-known/openid-configuration/jwks", s.jwks)
	m.HandleFunc("GET /Panopto/oauth2/connect/authorize", s.authorize)
	m.HandleFunc("POST /Panopto/oauth2/connect/token", s.token)
	m.HandleFunc("POST /Panopto/oauth2/connect/revocation", s.revocation)
	m.HandleFunc("POST /Panopto/oauth2/connect/introspect", s.introspect)

	m.HandleFunc("GET /Panopto/api/v1/folders", s.api(s.listFolders))
	m.HandleFunc("GET /Panopto/api/v1/folders/search", s.api(s.searchFolders))
	m.HandleFunc("GET /Panopto/api/v1/folders/{id}", s.api(s.getFolder))
	m.HandleFunc("GET /Panopto/api/v1/folders/{id}/children", s.api(s.folderChildren))
	m.HandleFunc("GET /Panopto/api/v1/folders/{id}/sessions", s.api(s.folderSessions))
	m.HandleFunc("GET /Panopto/api/v1/sessions/{id}", s.api(s.getSession))
	m.HandleFunc("POST /Panopto/api/v1/echo", s.api(s.echo))
	m.HandleFunc("GET /Panopto/api/v1/stream", s.api(s.stream))
	m.HandleFunc("GET /Panopto/api/v1/whoami", s.api(s.whoami))
	m.HandleFunc("/Panopto/api/", s.api(func(w http.ResponseWriter, r *http.Request, _ *grant) {
		writeJSON(w, http.StatusNotFound, map[string]string{"Message": "No HTTP resource was found that matches the request URI."})
	}))

	m.HandleFunc("POST /Panopto/PublicAPI/REST/sessionUpload", s.publicAPI(s.createUpload))
	m.HandleFunc("GET /Panopto/PublicAPI/REST/sessionUpload/{id}", s.publicAPI(s.getUpload))
	m.HandleFunc("PUT /Panopto/PublicAPI/REST/sessionUpload/{id}", s.publicAPI(s.putUpload))
	m.HandleFunc("DELETE /Panopto/PublicAPI/REST/sessionUpload/{id}", s.publicAPI(s.deleteUpload))
	m.HandleFunc("/Panopto/PublicAPI/", s.publicAPI(func(w http.ResponseWriter, r *http.Request, _ *grant) {
		writeJSON(w, http.StatusNotFound, map[string]string{"Message": "No HTTP resource was found that matches the request URI."})
	}))

	m.HandleFunc("/Panopto/Upload/{id}/{key...}", s.s3)
	s.mux = m
}

// ServeHTTP serves every endpoint listed in the package documentation.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(sw, r)
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "dur", s.now().Sub(start))
}

// statusWriter records the status for the request log. Unwrap lets
// http.ResponseController reach the real writer (flush, full duplex, hijack).
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.TokenCalls = make(map[string]int, len(s.stats.TokenCalls))
	for k, v := range s.stats.TokenCalls {
		st.TokenCalls[k] = v
	}
	return st
}

// RotateClientSecret replaces the client secret; the old one stops working
// at once. Tokens already issued stay valid.
func (s *Server) RotateClientSecret(newSecret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clientSecret = newSecret
}

// SetAccessTTL changes the lifetime of the access tokens issued from now on.
func (s *Server) SetAccessTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.AccessTTL = d
}

// DenyNextAuthorize makes the next well-formed authorize request redirect
// back with error=access_denied, as when the user clicks "deny".
func (s *Server) DenyNextAuthorize() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denyNext = true
}

// ExpireAllAccessTokens makes every access token issued so far expired.
// Refresh tokens are unaffected.
func (s *Server) ExpireAllAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.access {
		a.expired = true
	}
}

// newID returns n random bytes, hex-encoded.
func newID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newGUID returns a random version-4 GUID in Panopto's lower-case form.
func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// isGUID reports whether v looks like a GUID (8-4-4-4-12 hex digits).
func isGUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i, c := range v {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// drain reads and discards at most 64 KiB of a body so the connection can be
// reused, without trusting the client to send a small one.
func drain(r *http.Request) {
	_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
}

// Secrets returns every secret this server has handed out or holds: the
// client secret, the access tokens, refresh tokens and codes it issued
// that it still remembers, and every id_token it issued. Tests scan a
// sidecar's output for them.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{s.clientSecret}
	for k := range s.access {
		out = append(out, k)
	}
	for k := range s.refresh {
		out = append(out, k)
	}
	for k := range s.codes {
		out = append(out, k)
	}
	return append(out, s.oidc.issued...)
}
