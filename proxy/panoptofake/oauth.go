package panoptofake

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
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

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	formErr := readForm(w, r)
	gt := r.PostForm.Get("grant_type")
	s.mu.Lock()
	s.stats.TokenCalls[gt]++
	s.mu.Unlock()
	if f, ok := s.nextFault(&s.tokenFaults); ok && s.serveFault(w, r, f) {
		return
	}
	if formErr != "" {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: formErr})
		return
	}
	if len(r.URL.Query()) > 0 {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "parameters belong in the body"})
		return
	}
	if !s.clientAuth(w, r) {
		return
	}
	switch gt {
	case "authorization_code":
		s.codeGrant(w, r)
	case "refresh_token":
		s.refreshGrant(w, r)
	case "password":
		s.passwordGrant(w, r)
	case "":
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "grant_type required"})
	default:
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "unsupported_grant_type"})
	}
}

func invalidGrant(w http.ResponseWriter, desc string) {
	writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_grant", Description: desc})
}

func (s *Server) codeGrant(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	code, verifier := f.Get("code"), f.Get("code_verifier")
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[code]
	switch {
	case !ok:
		invalidGrant(w, "unknown authorization code")
		return
	case c.used:
		// RFC 6749 §4.1.2: a code used twice revokes what it was redeemed for.
		s.stats.CodeReuse++
		if g := s.grants[c.grantID]; g != nil && !g.revoked {
			g.revoked = true
			s.stats.GrantsRevoked++
		}
		invalidGrant(w, "authorization code already used")
		return
	case !s.now().Before(c.expires):
		delete(s.codes, code)
		invalidGrant(w, "authorization code expired")
		return
	case c.clientID != s.opts.ClientID:
		invalidGrant(w, "authorization code issued to another client")
		return
	case f.Get("redirect_uri") != c.redirectURI:
		invalidGrant(w, "redirect_uri does not match the authorize request")
		return
	case len(verifier) < 43 || len(verifier) > 128:
		invalidGrant(w, "code_verifier must be 43-128 characters")
		return
	}
	sum := sha256.Sum256([]byte(verifier))
	if subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(c.challenge)) != 1 {
		invalidGrant(w, "code_verifier does not match code_challenge")
		return
	}
	c.used = true
	g := &grant{id: newGUID(), clientID: c.clientID, user: c.user, grantType: "authorization_code", scopes: c.scopes, nonce: c.nonce}
	c.grantID = g.id
	s.grants[g.id] = g
	idToken := ""
	if slices.Contains(g.scopes, "openid") {
		var err error
		if idToken, err = s.idTokenLocked(r, g); err != nil {
			s.log.Error("issue id token", "err", err)
			writeJSON(w, http.StatusInternalServerError, oauthError{Error: "server_error"})
			return
		}
	}
	s.issueLocked(w, g, g.scopes, idToken)
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	rt := f.Get("refresh_token")
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[rt]
	switch {
	case !ok:
		invalidGrant(w, "unknown refresh token")
		return
	case t.rotated:
		// Reuse of a rotated token: assume theft, revoke the whole grant.
		s.stats.RefreshReuse++
		if !t.g.revoked {
			t.g.revoked = true
			s.stats.GrantsRevoked++
		}
		invalidGrant(w, "refresh token already used")
		return
	case t.g.revoked:
		invalidGrant(w, "grant revoked")
		return
	case !t.expires.IsZero() && !s.now().Before(t.expires):
		invalidGrant(w, "refresh token expired")
		return
	case t.g.clientID != s.opts.ClientID:
		invalidGrant(w, "refresh token issued to another client")
		return
	}
	scopes := t.g.scopes
	if sc := strings.Fields(f.Get("scope")); len(sc) > 0 {
		for _, x := range sc {
			if !slices.Contains(t.g.scopes, x) {
				writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_scope", Description: "scope exceeds the grant"})
				return
			}
		}
		scopes = sc
	}
	t.rotated = true
	s.stats.Refreshes++
	s.issueLocked(w, t.g, scopes, "")
}

// idpPassword is the password the identity-provider variant of the password
// grant expects, as in Panopto's auth-id-provider sample:
//
//	base64.StdEncoding(sha256(lower(username) + "|" + lower(appKey)))
//
// where username is the full `provider\user` string and the hash is over the
// UTF-8 bytes.
func idpPassword(username, appKey string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(username) + "|" + strings.ToLower(appKey)))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// IdentityProviderPassword returns the password a server presents for
// username (`provider\user`) with the provider's application key.
func IdentityProviderPassword(username, appKey string) string { return idpPassword(username, appKey) }

func (s *Server) passwordGrant(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	user, pass := f.Get("username"), f.Get("password")
	ok := false
	if want, found := s.opts.Users[user]; found && user != "" {
		ok = subtle.ConstantTimeCompare([]byte(pass), []byte(want)) == 1
	} else if provider, name, cut := strings.Cut(user, `\`); cut && provider != "" && name != "" {
		for p, key := range s.opts.IdentityProviders {
			if strings.EqualFold(p, provider) {
				ok = subtle.ConstantTimeCompare([]byte(pass), []byte(idpPassword(user, key))) == 1
				break
			}
		}
	}
	if !ok {
		invalidGrant(w, "invalid username or password")
		return
	}
	scopes := strings.Fields(f.Get("scope"))
	if len(scopes) == 0 {
		scopes = []string{"openid", "api", "offline_access"}
	}
	for _, sc := range scopes {
		if !slices.Contains(knownScopes, sc) {
			writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_scope"})
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := &grant{id: newGUID(), clientID: s.opts.ClientID, user: user, grantType: "password", scopes: scopes}
	s.grants[g.id] = g
	s.issueLocked(w, g, scopes, "")
}

// issueLocked mints an access token (and a refresh token with
// offline_access) for g and writes the token response, with idToken if it is
// not empty. s.mu is held.
func (s *Server) issueLocked(w http.ResponseWriter, g *grant, scopes []string, idToken string) {
	now := s.now()
	at := newID(32)
	s.access[at] = &accessToken{g: g, expires: now.Add(s.opts.AccessTTL)}
	s.stats.Issued++
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(s.opts.AccessTTL / time.Second),
		"scope":        strings.Join(scopes, " "),
	}
	if slices.Contains(scopes, "offline_access") {
		rt := newID(32)
		t := &refreshToken{g: g}
		if s.opts.RefreshTTL > 0 {
			t.expires = now.Add(s.opts.RefreshTTL)
		}
		s.refresh[rt] = t
		resp["refresh_token"] = rt
	}
	if idToken != "" {
		resp["id_token"] = idToken
	}
	writeJSON(w, http.StatusOK, resp)
}

// revocation revokes the grant behind an access or refresh token (RFC 7009).
// Unknown tokens answer 200 as well.
func (s *Server) revocation(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) || !s.clientAuth(w, r) {
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeJSON(w, http.StatusBadRequest, oauthError{Error: "invalid_request", Description: "token required"})
		return
	}
	s.mu.Lock()
	var g *grant
	if a, ok := s.access[tok]; ok {
		g = a.g
	} else if t, ok := s.refresh[tok]; ok {
		g = t.g
	}
	if g != nil && !g.revoked {
		g.revoked = true
		s.stats.GrantsRevoked++
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// introspect answers RFC 7662 for access and refresh tokens.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	if !parseForm(w, r) || !s.clientAuth(w, r) {
		return
	}
	tok := r.PostForm.Get("token")
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.access[tok]; ok && s.activeLocked(a) {
		writeJSON(w, http.StatusOK, map[string]any{
			"active": true, "token_type": "access_token", "client_id": a.g.clientID,
			"sub": a.g.user, "scope": strings.Join(a.g.scopes, " "), "exp": a.expires.Unix(),
		})
		return
	}
	if t, ok := s.refresh[tok]; ok && !t.rotated && !t.g.revoked && (t.expires.IsZero() || s.now().Before(t.expires)) {
		writeJSON(w, http.StatusOK, map[string]any{
			"active": true, "token_type": "refresh_token", "client_id": t.g.clientID,
			"sub": t.g.user, "scope": strings.Join(t.g.scopes, " "),
		})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"active": false})
}

func (s *Server) activeLocked(a *accessToken) bool {
	return !a.expired && !a.g.revoked && s.now().Before(a.expires)
}

// TokenActive reports what an introspection endpoint would say about an
// access token: issued here, not expired, its grant not revoked.
func (s *Server) TokenActive(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.access[accessToken]
	return ok && s.activeLocked(a)
}

// RefreshTokenActive reports whether a refresh token would be accepted.
func (s *Server) RefreshTokenActive(refreshToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[refreshToken]
	return ok && !t.rotated && !t.g.revoked && (t.expires.IsZero() || s.now().Before(t.expires))
}
