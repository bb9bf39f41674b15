package panoptofake

import (
	"crypto/subtle"
	"html"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// codeTTL is how long an authorization code may be redeemed.
const codeTTL = 60 * time.Second

// knownScopes are the scopes the fake client is allowed to ask for.
var knownScopes = []string{"openid", "profile", "email", "api", "offline_access"}

type authCode struct {
	clientID    string
	redirectURI string
	challenge   string
	scopes      []string
	nonce       string
	user        string
	expires     time.Time
	used        bool
	grantID     string // the grant it was redeemed for, to revoke on reuse
}

// grant is one login: every access and refresh token descended from it.
type grant struct {
	id        string
	clientID  string
	user      string
	grantType string
	scopes    []string
	nonce     string
	revoked   bool
}

type accessToken struct {
	g       *grant
	expires time.Time
	expired bool // set by ExpireAllAccessTokens
}

type refreshToken struct {
	g       *grant
	expires time.Time // zero: no expiry
	rotated bool
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (s *Server) countInvalidClient() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.InvalidClient++
}

// issuer is the OpenID issuer for this request's origin.
func (s *Server) issuer(r *http.Request) string { return s.origin(r) + "/Panopto/oauth2" }

// origin is PublicOrigin or the origin the request arrived on.
func (s *Server) origin(r *http.Request) string {
	if s.opts.PublicOrigin != "" {
		return s.opts.PublicOrigin
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	iss := s.issuer(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/connect/authorize",
		"token_endpoint":                        iss + "/connect/token",
		"revocation_endpoint":                   iss + "/connect/revocation",
		"introspection_endpoint":                iss + "/connect/introspect",
		"jwks_uri":                              iss + "/.well-known/openid-configuration/jwks",
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"subject_types_supported":               []string{"public"},
		"scopes_supported":                      knownScopes,
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "password"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

// authorize auto-approves a well-formed request: 302 to redirect_uri with
// code and state. A bad client_id or redirect_uri gets an HTML 400 page
// (never a redirect to an unregistered URI); other errors redirect back with
// error=… (RFC 6749 §4.1.2.1).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	s.stats.Authorizes++
	s.mu.Unlock()

	clientID, redirectURI, state := q.Get("client_id"), q.Get("redirect_uri"), q.Get("state")
	if clientID == "" || clientID != s.opts.ClientID {
		errorPage(w, "unknown client_id")
		return
	}
	if redirectURI == "" || !slices.Contains(s.opts.RedirectURIs, redirectURI) {
		errorPage(w, "redirect_uri is not registered for this client")
		return
	}
	fail := func(code, desc string) {
		u, _ := url.Parse(redirectURI)
		v := u.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if state != "" {
			v.Set("state", state)
		}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	for _, p := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method"} {
		if len(q[p]) > 1 {
			fail("invalid_request", p+" repeated")
			return
		}
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		fail("invalid_scope", "scope required")
		return
	}
	for _, sc := range scopes {
		if !slices.Contains(knownScopes, sc) {
			fail("invalid_scope", "unknown scope "+sc)
			return
		}
	}
	if state == "" {
		fail("invalid_request", "state required")
		return
	}
	nonce := q.Get("nonce")
	if nonce == "" {
		fail("invalid_request", "nonce required")
		return
	}
	challenge := q.Get("code_challenge")
	if challenge == "" || q.Get("code_challenge_method") != "S256" {
		fail("invalid_request", "code_challenge with code_challenge_method=S256 required")
		return
	}
	if len(challenge) != 43 {
		fail("invalid_request", "code_challenge must be base64url(sha256(verifier)) without padding")
		return
	}
	user := q.Get("login_hint")
	if user == "" {
		user = s.opts.DefaultUser
	}

	s.mu.Lock()
	deny := s.denyNext
	s.denyNext = false
	code := ""
	if !deny {
		code = newID(24)
		s.codes[code] = &authCode{
			clientID:    clientID,
			redirectURI: redirectURI,
			challenge:   challenge,
			scopes:      scopes,
			nonce:       nonce,
			user:        user,
			expires:     s.now().Add(codeTTL),
		}
	}
	s.mu.Unlock()
	if deny {
		fail("access_denied", "the user denied the request")
		return
	}
	u, _ := url.Parse(redirectURI)
	v := u.Query()
	v.Set("code", code)
	v.Set("state", state)
	v.Set("scope", strings.Join(scopes, " "))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func errorPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Sorry, there was an error</h1><p>" +
		html.EscapeString(msg) + "</p></body></html>"))
}

// readForm checks the content type and parses a bounded form body into
// r.PostForm. It returns a description of what is wrong, or "".
func readForm(w http.ResponseWriter, r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return "content type must be application/x-www-form-urlencoded"
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return "malformed form body"
	}
	return ""
}

// parseForm is readForm answering 400 invalid_request itself.
func parseForm(w http.ResponseWriter, r *http.Request) bool {
	if desc := readForm(w, r); desc != "" {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: desc})
		return false
	}
	return true
}

// clientAuth authenticates the client by HTTP Basic (form-urlencoded id and
// secret, RFC 6749 §2.3.1) or client_id/client_secret in the body. When both
// are present they must agree. On failure it answers 401 invalid_client.
func (s *Server) clientAuth(w http.ResponseWriter, r *http.Request) bool {
	bodyID, bodySecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	id, secret := bodyID, bodySecret
	basicID, basicSecret, basic := r.BasicAuth()
	ok := true
	if basic {
		var err1, err2 error
		basicID, err1 = url.QueryUnescape(basicID)
		basicSecret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			ok = false
		}
		if bodyID != "" && bodyID != basicID || bodySecret != "" && bodySecret != basicSecret {
			ok = false
		}
		id, secret = basicID, basicSecret
	}
	s.mu.Lock()
	want := s.clientSecret
	s.mu.Unlock()
	if ok && id != "" && id == s.opts.ClientID &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1 {
		return true
	}
	s.countInvalidClient()
	if basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="Panopto"`)
	}
	writeJSON(w, http.StatusUnauthorized, oauthError{Error: "invalid_client"})
	return false
}
