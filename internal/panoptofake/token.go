package panoptofake

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"
)

// token is the token endpoint: the authorization-code, refresh-token and
// password grants, each checked as strictly as Panopto's IdentityServer does.
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
