package login

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
)

// Errors of ID-token verification. Every error VerifyIDToken returns wraps
// exactly one of ErrNoIDToken, ErrOIDCDiscovery or ErrIDTokenInvalid; a
// wrong nonce wraps ErrNonceMismatch as well. None of them carries the token.
var (
	// ErrNoIDToken: the token response had no id_token.
	ErrNoIDToken = errors.New("no id_token in the token response")
	// ErrOIDCDiscovery: the provider's discovery document could not be read;
	// the next verification tries again.
	ErrOIDCDiscovery = errors.New("openid discovery failed")
	// ErrIDTokenInvalid: malformed, badly signed, from another issuer, for
	// another audience, expired, or with another nonce.
	ErrIDTokenInvalid = errors.New("invalid id_token")
	// ErrNonceMismatch: the id_token's nonce is not the one this login sent.
	ErrNonceMismatch = errors.New("id_token nonce does not match the login's")
	// ErrIdentityMismatch: MatchIdentity found another Panopto user than
	// the account's.
	ErrIdentityMismatch = errors.New("panopto identity does not match the account")
)

// discoveryTimeout bounds one discovery attempt, whatever the caller's
// deadline.
const discoveryTimeout = 15 * time.Second

// IDVerifier verifies the id_token of an authorization-code answer with
// go-oidc: the signature against the provider's JWKS, iss, aud (the client
// id), exp, and the nonce the login sent. It finds the JWKS by OpenID
// discovery on first use, not at construction, so the sidecar starts while
// Panopto is unreachable; a failed discovery is retried by the next call, a
// successful one is kept. Safe for concurrent use.
type IDVerifier struct {
	issuer   string
	clientID string
	client   *http.Client
	now      func() time.Time

	sem      chan struct{} // held while discovering: one attempt at a time
	verifier *oidc.IDTokenVerifier
}

// NewIDVerifier returns a verifier for tokens issued by issuer (for Panopto
// {upstream}/Panopto/oauth2) to clientID. client fetches discovery and JWKS
// (nil: http.DefaultClient); now is the clock (nil: time.Now).
func NewIDVerifier(issuer, clientID string, client *http.Client, now func() time.Time) *IDVerifier {
	if client == nil {
		client = http.DefaultClient
	}
	if now == nil {
		now = time.Now
	}
	return &IDVerifier{
		issuer:   issuer,
		clientID: clientID,
		client:   client,
		now:      now,
		sem:      make(chan struct{}, 1),
	}
}

// VerifyIDToken verifies rawIDToken and that it carries nonce, and returns
// the identity it names.
func (v *IDVerifier) VerifyIDToken(ctx context.Context, rawIDToken, nonce string) (token.Identity, error) {
	if rawIDToken == "" {
		return token.Identity{}, fmt.Errorf("oidc: verify id token: %w", ErrNoIDToken)
	}
	verifier, err := v.load(ctx)
	if err != nil {
		return token.Identity{}, err
	}
	tok, err := verifier.Verify(ctx, rawIDToken)
	if err != nil {
		// go-oidc's messages name claims and issuers, never the token.
		return token.Identity{}, fmt.Errorf("oidc: verify id token: %w: %w", ErrIDTokenInvalid, err)
	}
	if nonce == "" || subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(nonce)) != 1 {
		return token.Identity{}, fmt.Errorf("oidc: verify id token: %w: %w", ErrIDTokenInvalid, ErrNonceMismatch)
	}
	var c struct {
		PreferredUsername string `json:"preferred_username"`
		Name              string `json:"name"`
		Email             string `json:"email"`
		UPN               string `json:"upn"`
	}
	if err := tok.Claims(&c); err != nil {
		return token.Identity{}, fmt.Errorf("oidc: read id token claims: %w: %w", ErrIDTokenInvalid, err)
	}
	if tok.Subject == "" {
		return token.Identity{}, fmt.Errorf("oidc: verify id token: %w: no sub claim", ErrIDTokenInvalid)
	}
	return token.Identity{Subject: tok.Subject, PreferredUsername: c.PreferredUsername, Name: c.Name, Email: c.Email, UPN: c.UPN}, nil
}

// load returns the verifier, running discovery if no attempt has succeeded
// yet. Callers wait for an attempt in flight, each on its own ctx.
func (v *IDVerifier) load(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	select {
	case v.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("oidc: wait for discovery of %s: %w", v.issuer, ctx.Err())
	}
	defer func() { <-v.sem }()
	if v.verifier != nil {
		return v.verifier, nil
	}
	dctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	// The provider keeps only the client from this context, never the
	// context itself, for its later JWKS fetches.
	p, err := oidc.NewProvider(oidc.ClientContext(dctx, v.client), v.issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc: discover %s: %w: %w", v.issuer, ErrOIDCDiscovery, err)
	}
	v.verifier = p.Verifier(&oidc.Config{ClientID: v.clientID, Now: v.now})
	return v.verifier, nil
}

// IdentityClaimNone is accounts.identity_claim's explicit opt-out: a login
// connects the account to whichever Panopto user signed in.
const IdentityClaimNone = "none"

// identityClaims are the claims MatchIdentity can compare: each names one
// Panopto user. "name" is not one of them: two people can share a name.
var identityClaims = map[string]func(token.Identity) string{
	"sub":                func(id token.Identity) string { return id.Subject },
	"preferred_username": func(id token.Identity) string { return id.PreferredUsername },
	"email":              func(id token.Identity) string { return id.Email },
	"upn":                func(id token.Identity) string { return id.UPN },
}

// CheckIdentityClaim reports whether claim can be used as
// accounts.identity_claim: "" (not set), sub, preferred_username, email,
// upn, or IdentityClaimNone. Whether it may be unset is the caller's
// question (it may not in accounts.mode login).
func CheckIdentityClaim(claim string) error {
	if _, ok := identityClaims[claim]; ok || claim == "" || claim == IdentityClaimNone {
		return nil
	}
	if claim == "name" {
		return errors.New(`identity claim "name" cannot tell two people apart (names are not unique): use sub, preferred_username, email or upn`)
	}
	return fmt.Errorf("identity claim %q is not one of sub, preferred_username, email, upn, none", claim)
}

// DefaultIdentityTemplate is accounts.identity_template when unset.
const DefaultIdentityTemplate = "{account}"

// MatchIdentity checks that the Panopto identity id belongs to account. With
// claim IdentityClaimNone there is nothing to check. Otherwise the claim's
// value must equal template (DefaultIdentityTemplate when "") with every
// "{account}" replaced by account, ASCII letters compared
// case-insensitively and nothing else folded; else, and for a claim that is
// "" or unknown, the error wraps ErrIdentityMismatch.
func MatchIdentity(id token.Identity, claim, template, account string) error {
	if claim == IdentityClaimNone {
		return nil
	}
	get, ok := identityClaims[claim]
	if !ok {
		return fmt.Errorf("match identity: %w: no usable identity claim configured (%q)", ErrIdentityMismatch, claim)
	}
	if template == "" {
		template = DefaultIdentityTemplate
	}
	want := strings.ReplaceAll(template, "{account}", account)
	got := get(id)
	if got == "" || !ascii.EqualFold(got, want) {
		return fmt.Errorf("match identity: %w: %s is %q, want %q", ErrIdentityMismatch, claim, got, want)
	}
	return nil
}
