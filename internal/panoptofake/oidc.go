package panoptofake

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// idTokenTTL is the lifetime of an id_token, IdentityServer's default.
const idTokenTTL = 5 * time.Minute

// IDTokenFault is a way to spoil the id_token of the next authorization-code
// token response, so that a client's verification can be tested.
type IDTokenFault int

const (
	// IDTokenGood issues a correct id_token (no fault).
	IDTokenGood IDTokenFault = iota
	// IDTokenWrongNonce carries a nonce other than the one sent to authorize.
	IDTokenWrongNonce
	// IDTokenWrongAudience is issued to another client id.
	IDTokenWrongAudience
	// IDTokenWrongIssuer names an issuer other than the discovery document's.
	IDTokenWrongIssuer
	// IDTokenBadSignature is signed with a key that is not in the JWKS but
	// carries the JWKS key's kid.
	IDTokenBadSignature
	// IDTokenExpired expired an hour ago.
	IDTokenExpired
	// IDTokenOmitted leaves the id_token out of the response.
	IDTokenOmitted
)

// Profile is what the stand-in knows about a login user besides its name,
// for the id_token's name, email and upn claims.
type Profile struct {
	Name  string
	Email string
	UPN   string
}

// oidcState is the Server's OpenID Connect state, guarded by Server.mu.
type oidcState struct {
	nextFault IDTokenFault
	profiles  map[string]Profile
	issued    []string // every id_token handed out
}

// signingKeyID is the kid of the one key in the JWKS.
const signingKeyID = "panoptofake-1"

// signingKeys are the id_token key and a stranger key for bad signatures.
// Every Server in a process shares them: generating RSA keys per Server
// would slow every test that logs in, and the issuer tells Servers apart.
var signingKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	gen := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic("panoptofake: generate RSA key: " + err.Error()) // crypto/rand does not fail
		}
		return k
	}
	return gen(), gen()
})

// ForgeNextIDToken spoils the id_token of the next authorization-code token
// response that would carry one (scope openid). IDTokenGood cancels a
// pending fault.
func (s *Server) ForgeNextIDToken(f IDTokenFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oidc.nextFault = f
}

// SetProfile sets the name, email and upn the id_token carries for user.
// Without one, name is the user name and there is no email nor upn.
func (s *Server) SetProfile(user string, p Profile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.oidc.profiles == nil {
		s.oidc.profiles = map[string]Profile{}
	}
	s.oidc.profiles[user] = p
}

// jwks serves the public signing key (RFC 7517).
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	key, _ := signingKeys()
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &key.PublicKey, KeyID: signingKeyID, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// idTokenLocked returns the id_token for a code grant of g, or "" when the
// scope lacks openid or the pending fault omits it. It consumes the pending
// fault. s.mu is held.
func (s *Server) idTokenLocked(r *http.Request, g *grant) (string, error) {
	fault := s.oidc.nextFault
	s.oidc.nextFault = IDTokenGood
	if fault == IDTokenOmitted {
		return "", nil
	}
	now := s.now()
	p, ok := s.oidc.profiles[g.user]
	if !ok {
		p.Name = g.user
	}
	claims := map[string]any{
		"iss":                s.issuer(r),
		"aud":                g.clientID,
		"sub":                g.user,
		"preferred_username": g.user,
		"name":               p.Name,
		"nonce":              g.nonce,
		"iat":                now.Unix(),
		"exp":                now.Add(idTokenTTL).Unix(),
		"auth_time":          now.Unix(),
		"idp":                "local",
	}
	if p.Email != "" {
		claims["email"] = p.Email
	}
	if p.UPN != "" {
		claims["upn"] = p.UPN
	}
	key, stranger := signingKeys()
	switch fault {
	case IDTokenWrongNonce:
		claims["nonce"] = "not-" + g.nonce
	case IDTokenWrongAudience:
		claims["aud"] = "another-client"
	case IDTokenWrongIssuer:
		claims["iss"] = "https://elsewhere.example/Panopto/oauth2"
	case IDTokenBadSignature:
		key = stranger
	case IDTokenExpired:
		claims["iat"] = now.Add(-2 * time.Hour).Unix()
		claims["exp"] = now.Add(-time.Hour).Unix()
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: signingKeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("id token: new signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("id token: encode claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("id token: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err == nil {
		s.oidc.issued = append(s.oidc.issued, tok)
	}
	return tok, err
}

// IDTokens returns every id_token this server handed out, for tests that
// look for them where none may appear. Secrets includes them too.
func (s *Server) IDTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.oidc.issued...)
}
