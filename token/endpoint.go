package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Endpoint describes Panopto's OAuth2 endpoints and how the sidecar uses them.
// It is an immutable value; a config reload builds a new one.
type Endpoint struct {
	AuthURL       string
	TokenURL      string
	RevocationURL string
	RedirectURL   string
	Scopes        []string
	ClientAuth    ClientAuth
	RefreshBefore time.Duration
	Timeout       time.Duration // one token-endpoint call
	LoginURL      string        // where a person connects the default grant, for messages; "" where no login URL works
}

// ClientAuth is how the client authenticates at the token endpoint. Its
// value is the config's oauth.client_auth.
type ClientAuth string

const (
	ClientAuthBasic ClientAuth = "basic" // HTTP Basic (default)
	ClientAuthBody  ClientAuth = "body"  // client_id and client_secret in the form
)

func (e *Endpoint) OAuth2Config(c ClientCredentials) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if e.ClientAuth == ClientAuthBody {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:     c.ID,
		ClientSecret: c.Secret.Reveal(),
		Endpoint: oauth2.Endpoint{
			AuthURL:   e.AuthURL,
			TokenURL:  e.TokenURL,
			AuthStyle: style,
		},
		RedirectURL: e.RedirectURL,
		Scopes:      e.Scopes,
	}
}

// Errors a token-endpoint call maps to.
var (
	// ErrInvalidGrant: the refresh token (or code) is dead; a person must log in.
	ErrInvalidGrant = errors.New("invalid_grant")
	// ErrInvalidClient: the client credentials were refused.
	ErrInvalidClient = errors.New("invalid_client")
	// ErrNotConnected: no usable access token is held.
	ErrNotConnected = errors.New("panopto not connected")
)

// EndpointError is a failed token-endpoint call. Its text never carries a
// token or the response body.
type EndpointError struct {
	Op        string // "refresh", "exchange", "password"
	Status    int    // HTTP status, 0 if none was received
	Code      string // OAuth error code, if any
	Transient bool   // worth retrying with backoff
	Err       error
}

func (e *EndpointError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token endpoint: %s", e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": status %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if e.Err != nil && e.Status == 0 {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *EndpointError) Unwrap() error {
	switch e.Code {
	case "invalid_grant":
		return ErrInvalidGrant
	case "invalid_client", "unauthorized_client":
		return ErrInvalidClient
	}
	return e.Err
}

// tokenCall runs one token-endpoint call through x/oauth2 and turns its token
// into a Grant stamped with now.
type tokenCall struct {
	client *http.Client
	now    func() time.Time
}

func (tc tokenCall) do(ctx context.Context, op string, e *Endpoint, fetch func(ctx context.Context) (*oauth2.Token, error)) (*Grant, error) {
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, tc.client)
	start := tc.now()
	tok, err := fetch(ctx)
	if err != nil {
		return nil, classify(op, err)
	}
	if tok.AccessToken == "" {
		return nil, &EndpointError{Op: op, Transient: true, Err: errors.New("response has no access_token")}
	}
	g := &Grant{
		AccessToken:  Secret(tok.AccessToken),
		RefreshToken: Secret(tok.RefreshToken),
		TokenType:    tok.TokenType,
		ObtainedAt:   start,
	}
	if s, ok := tok.Extra("scope").(string); ok {
		g.Scope = s
	}
	// Expiry is counted from when the call started, on our own clock, so a
	// slow response never makes the token look younger than it is.
	switch {
	case tok.ExpiresIn > 0:
		g.Expiry = start.Add(time.Duration(tok.ExpiresIn) * time.Second)
	case !tok.Expiry.IsZero():
		g.Expiry = start.Add(time.Until(tok.Expiry))
	default:
		g.Expiry = start.Add(time.Hour) // Panopto's documented lifetime
	}
	return g, nil
}

func classify(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &EndpointError{Op: op, Code: re.ErrorCode, Err: errors.New("token endpoint refused")}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
		}
		switch {
		case re.ErrorCode == "invalid_grant", re.ErrorCode == "invalid_client", re.ErrorCode == "unauthorized_client":
			e.Transient = false
		case e.Status == http.StatusTooManyRequests || e.Status >= 500 || e.Status == 0:
			e.Transient = true
		case e.Status == http.StatusUnauthorized:
			e.Code = "invalid_client"
		default:
			// Other 4xx answers (and garbage 2xx bodies that oauth2 reports
			// as a RetrieveError) are retried with backoff: a person cannot
			// fix them by logging in.
			e.Transient = true
		}
		return e
	}
	// Transport errors, timeouts, undecodable bodies.
	return &EndpointError{Op: op, Transient: true, Err: scrub(err)}
}

// scrub keeps an error's text free of anything the endpoint sent back.
func scrub(err error) error {
	var ue interface{ Timeout() bool }
	if errors.As(err, &ue) && ue.Timeout() {
		return errors.New("timeout")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timeout")
	}
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	msg := err.Error()
	if strings.Contains(msg, "cannot parse json") || strings.Contains(msg, "cannot unmarshal") || strings.Contains(msg, "invalid character") {
		return errors.New("undecodable response")
	}
	return errors.New(firstLine(msg, 200))
}

func firstLine(s string, max int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > max {
		s = s[:max]
	}
	return s
}

// Revoke asks Panopto's revocation endpoint to revoke token (RFC 7009),
// authenticating as the client the way ClientAuth says.
func (e *Endpoint) Revoke(ctx context.Context, client *http.Client, c ClientCredentials, token Secret, hint string) error {
	if e.RevocationURL == "" {
		return errors.New("revoke: no revocation URL configured")
	}
	form := url.Values{"token": {token.Reveal()}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	if e.ClientAuth == ClientAuthBody {
		form.Set("client_id", c.ID)
		form.Set("client_secret", c.Secret.Reveal())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.RevocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if e.ClientAuth != ClientAuthBody {
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret.Reveal()))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("revoke: %w", scrub(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke: status %d", resp.StatusCode)
	}
	return nil
}
