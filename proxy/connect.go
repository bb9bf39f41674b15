package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Per-student connection (accounts.mode login): OnTrack asks for a login
// link with POST /-/connect, the student's browser follows it through
// /-/login?ticket=… and Panopto back to /redirect, and OnTrack reads or
// removes the account's connection at /-/accounts/{account}.

// ConnectOptions are the reloadable settings of per-student connection.
type ConnectOptions struct {
	// ReturnTo lists the URL prefixes a login may send the browser back to.
	ReturnTo []string
	// TicketTTL is how long a login link stays valid (0: 10 minutes).
	TicketTTL time.Duration
	// IdentityClaim is the id_token claim that must name the account of a
	// per-student login: sub, preferred_username, email or upn; "none"
	// (login.IdentityClaimNone) connects whichever Panopto user signed in,
	// with a warning at every login. Unset, every per-student login is
	// refused.
	IdentityClaim string
	// IdentityTemplate is what the claim must equal, "{account}" replaced
	// by the account ("" is login.DefaultIdentityTemplate).
	IdentityTemplate string
	// Issuer is the OpenID issuer; "" is {upstream}/Panopto/oauth2.
	Issuer string
}

// ConnectDeps are the long-lived collaborators of per-student connection.
type ConnectDeps struct {
	// Store keeps the login tickets' single-use marks: the token store, so
	// that every replica sharing it refuses a ticket used on another.
	Store token.Store
	// HTTPClient fetches the OpenID discovery document and the JWKS.
	HTTPClient *http.Client
	// Now is the clock of tickets and id_token expiry (nil: Deps.Now).
	Now func() time.Time
}

// connectState is the handler's per-student connection state.
type connectState struct {
	idv         atomic.Pointer[idVerifierEntry]
	noIDTokenMu sync.Once
}

type idVerifierEntry struct {
	issuer, clientID string
	v                *login.IDVerifier
}

// Reasons a login ends without a connection, as sent to return_to.
const (
	reasonAccessDenied     = "access_denied"
	reasonIdentityMismatch = "identity_mismatch"
	reasonExchangeFailed   = "exchange_failed"
	reasonTicketInvalid    = "ticket_invalid"
)

// tickets returns the login tickets as configured now. Tickets hold no
// state of their own (the marks are in the store), so a reload's new TTL
// applies to the next ticket minted.
func (h *Handler) tickets(o *Options) *login.Tickets {
	return login.NewTickets(h.deps.Connect.Store, login.TicketKeyFromCredentials(h.deps.Credentials), o.Connect.TicketTTL, h.connectNow())
}

func (h *Handler) connectNow() func() time.Time {
	if h.deps.Connect.Now != nil {
		return h.deps.Connect.Now
	}
	return h.deps.Now
}

// idVerifier returns the id_token verifier for the issuer and client id in
// force, keeping its discovered keys while they do not change.
func (h *Handler) idVerifier(o *Options, clientID string) *login.IDVerifier {
	issuer := o.Connect.Issuer
	if issuer == "" && o.Upstream != nil {
		issuer = strings.TrimRight(o.Upstream.String(), "/") + "/Panopto/oauth2"
	}
	if e := h.conn.idv.Load(); e != nil && e.issuer == issuer && e.clientID == clientID {
		return e.v
	}
	e := &idVerifierEntry{issuer: issuer, clientID: clientID, v: login.NewIDVerifier(issuer, clientID, h.deps.Connect.HTTPClient, h.connectNow())}
	h.conn.idv.Store(e)
	return e.v
}

// audit writes the one line an account event leaves: event is login,
// logout, connect or disconnect; result is ok or the reason it failed;
// extra is appended (a login's Panopto identity).
func (h *Handler) audit(r *http.Request, event, account, result string, err error, extra ...slog.Attr) {
	level := slog.LevelInfo
	if result != "ok" {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("event", event), slog.String("account", sanitizeN(account, token.MaxAccountLen)),
		slog.String("remote", r.RemoteAddr), slog.String("result", result),
	}
	attrs = append(attrs, extra...)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	h.log.LogAttrs(r.Context(), level, "audit", attrs...)
}

// identityAttrs are the audit attributes of the Panopto user a login's
// verified id_token names (none when no id_token was verified).
func identityAttrs(id *token.Identity) []slog.Attr {
	if id == nil {
		return nil
	}
	return []slog.Attr{
		slog.String("panopto_sub", sanitizeN(id.Subject, token.MaxAccountLen)),
		slog.String("panopto_user", sanitizeN(id.PreferredUsername, token.MaxAccountLen)),
	}
}

// returnToAllowed reports whether returnTo may be a login's return_to: an
// absolute http(s) URL without user info or dot segments that starts with
// one of allowed, where a prefix that does not end in "/" must be followed
// by "/", "?", "#" or nothing (https://ontrack.example does not allow
// https://ontrack.example.evil.test).
func returnToAllowed(returnTo string, allowed []string) bool {
	u, err := url.Parse(returnTo)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return false
	}
	if strings.ContainsAny(returnTo, "\\\x00\r\n\t ") {
		return false
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if s, err := url.PathUnescape(seg); err != nil || s == "." || s == ".." {
			return false
		}
	}
	for _, p := range allowed {
		if p == "" || !strings.HasPrefix(returnTo, p) {
			continue
		}
		rest := returnTo[len(p):]
		if strings.HasSuffix(p, "/") || rest == "" || strings.ContainsRune("/?#", rune(rest[0])) {
			return true
		}
	}
	return false
}

// returnURL adds the login's outcome to returnTo's query, replacing any
// panopto, account or reason parameters it had and keeping the others as
// they were written.
func returnURL(returnTo, account, reason string) string {
	u, err := url.Parse(returnTo)
	if err != nil {
		return returnTo // checked when the ticket was minted; cannot happen
	}
	var kept []string
	for _, kv := range strings.Split(u.RawQuery, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if name, err := url.QueryUnescape(k); kv == "" || err == nil && (name == "panopto" || name == "account" || name == "reason") {
			continue
		}
		kept = append(kept, kv)
	}
	add := url.Values{"account": {account}}
	if reason == "" {
		add.Set("panopto", "connected")
	} else {
		add.Set("panopto", "error")
		add.Set("reason", reason)
	}
	u.RawQuery = strings.Join(append(kept, add.Encode()), "&")
	u.ForceQuery = false
	return u.String()
}

// connect serves POST /-/connect: a single-use login link for one account.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request, o *Options) {
	if o.AccountsMode != token.AccountsLogin {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "accounts_mode", "detail": "POST /-/connect needs accounts.mode: login"})
		return
	}
	var req struct {
		Account  string `json:"account"`
		ReturnTo string `json:"return_to"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10))
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "detail": `the body must be JSON {"account": "…", "return_to": "…"}`})
		return
	}
	if !token.ValidAccount(req.Account) {
		h.audit(r, "connect", req.Account, "invalid_account", nil)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_account", "detail": "account must be a Panopto user name: 1-256 bytes, no spaces, '/' or '\\'"})
		return
	}
	if req.ReturnTo != "" && !returnToAllowed(req.ReturnTo, o.Connect.ReturnTo) {
		h.audit(r, "connect", req.Account, "return_to_not_allowed", nil)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "return_to_not_allowed", "detail": "return_to must start with one of accounts.return_to"})
		return
	}
	ticket, expires, err := h.tickets(o).Mint(r.Context(), req.Account, req.ReturnTo)
	if err != nil {
		h.audit(r, "connect", req.Account, "unavailable", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unavailable", "detail": "the sidecar cannot sign login links now (client credentials); see its log"})
		return
	}
	h.audit(r, "connect", req.Account, "ok", nil)
	writeJSON(w, http.StatusCreated, map[string]any{
		"account":    req.Account,
		"login_url":  o.PublicURL + "/-/login?ticket=" + url.QueryEscape(ticket.Reveal()),
		"expires_at": expires,
	})
}

// accountView is GET /-/accounts/{account}. It holds no secret.
type accountView struct {
	Account     string    `json:"account"`
	Connected   bool      `json:"connected"`
	PanoptoUser string    `json:"panopto_user,omitempty"`
	Name        string    `json:"name,omitempty"`
	Email       string    `json:"email,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
}

// accountManager is the manager of the account a request to
// /-/accounts/{account} names. When there is none it answers the request
// itself and returns nil.
func (h *Handler) accountManager(w http.ResponseWriter, r *http.Request, o *Options, name string) *token.Manager {
	if o.AccountsMode == token.AccountsOff {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "accounts_mode", "detail": "per-account grants need accounts.mode idp or login"})
		return nil
	}
	if !token.ValidAccount(name) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_account"})
		return nil
	}
	m, err := h.deps.Accounts.Manager(r.Context(), name)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_account"})
		return nil
	}
	return m
}

// disconnect serves DELETE /-/accounts/{account}.
func (h *Handler) disconnect(w http.ResponseWriter, r *http.Request, o *Options) {
	name := r.PathValue("account")
	m := h.accountManager(w, r, o, name)
	if m == nil {
		return
	}
	revoked, err := h.forget(r.Context(), m, "disconnect")
	if err != nil {
		h.audit(r, "disconnect", name, "store_unavailable", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "store_unavailable"})
		return
	}
	h.audit(r, "disconnect", name, "ok", nil)
	writeJSON(w, http.StatusOK, map[string]any{"account": name, "connected": false, "revoked": revoked})
}

// account serves GET /-/accounts/{account}.
func (h *Handler) account(w http.ResponseWriter, r *http.Request, o *Options) {
	name := r.PathValue("account")
	m := h.accountManager(w, r, o, name)
	if m == nil {
		return
	}
	if o.AccountsMode == token.AccountsLogin {
		// Another replica may have connected the account: Token re-reads
		// the store (rate-limited) when nothing usable is held. Its error
		// only means "not connected", which Status says as well.
		_, _ = m.Token(r.Context())
	}
	st := m.Status()
	v := accountView{Account: name}
	// A grant whose token is being refreshed is still connected.
	if st.Connected || (st.Reason == token.ReasonRefreshPending && !st.ExpiresAt.IsZero()) {
		v.Connected, v.ExpiresAt = true, st.ExpiresAt
		if id := st.Identity; id != nil {
			v.PanoptoUser = id.PreferredUsername
			if v.PanoptoUser == "" {
				v.PanoptoUser = id.Subject
			}
			v.Name, v.Email = id.Name, id.Email
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// forget drops m's grant from the store and revokes it at Panopto (best
// effort: a failed revocation is logged, the grant is gone here anyway).
func (h *Handler) forget(ctx context.Context, m *token.Manager, reason string) (revoked bool, err error) {
	g, err := m.Forget(ctx, reason)
	if err != nil {
		return false, err
	}
	if g != nil && h.deps.Revoke != nil {
		if err := h.deps.Revoke(ctx, g); err != nil {
			h.log.Warn("revocation at Panopto failed; the grant is removed here", "err", err)
			return false, nil
		}
		return true, nil
	}
	return false, nil
}

// redeem turns a login link's ticket into the account and return_to it is
// for, using it up. When it cannot, it answers the browser itself and
// returns ok false.
func (h *Handler) redeem(w http.ResponseWriter, r *http.Request, o *Options, ticket string) (account, returnTo string, ok bool) {
	if o.AccountsMode != token.AccountsLogin {
		page(w, http.StatusBadRequest, "Cannot connect an account", "Login links need accounts.mode: login in config.yaml.")
		return "", "", false
	}
	c, err := h.tickets(o).Redeem(r.Context(), token.Secret(ticket))
	switch {
	case err == nil:
	case errors.Is(err, login.ErrTicketExpired), errors.Is(err, login.ErrTicketUsed):
		// Authentic: its return_to was allowed when it was minted.
		h.audit(r, "login", c.Account, reasonTicketInvalid, err)
		if c.ReturnTo != "" && returnToAllowed(c.ReturnTo, o.Connect.ReturnTo) {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, returnURL(c.ReturnTo, c.Account, reasonTicketInvalid), http.StatusFound)
			return "", "", false
		}
		page(w, http.StatusForbidden, "This login link cannot be used", "It has expired or was already used. Ask OnTrack for a new one.")
		return "", "", false
	case errors.Is(err, login.ErrTicketInvalid):
		// Nothing in it can be trusted, return_to least of all.
		h.audit(r, "login", "", reasonTicketInvalid, err)
		page(w, http.StatusForbidden, "This login link is not valid", "Open the link OnTrack gave you, unchanged.")
		return "", "", false
	default:
		h.audit(r, "login", c.Account, "unavailable", err)
		page(w, http.StatusServiceUnavailable, "Cannot start the login", "The sidecar cannot check login links now. Try again in a minute.")
		return "", "", false
	}
	if c.ReturnTo != "" && !returnToAllowed(c.ReturnTo, o.Connect.ReturnTo) {
		// accounts.return_to changed since the link was made: the
		// sidecar's own page it is.
		c.ReturnTo = ""
	}
	return c.Account, c.ReturnTo, true
}

// verifyIdentity checks the id_token of a login and returns the identity
// it names (nil when none was verified) and, when the login is refused, the
// reason. A per-student login must name its account in
// o.Connect.IdentityClaim, unless that is "none"; the operator's login of the
// default grant has no account to compare with.
func (h *Handler) verifyIdentity(ctx context.Context, o *Options, done login.Completed, idToken token.Secret) (*token.Identity, string, error) {
	claim := o.Connect.IdentityClaim
	check := done.Account != "" && claim != login.IdentityClaimNone
	if done.Account != "" && !check {
		h.log.Warn("login without an identity check (accounts.identity_claim: none): the account is connected to whichever Panopto user signed in",
			"account", sanitizeN(done.Account, token.MaxAccountLen))
	}
	if idToken.IsZero() {
		if check {
			return nil, reasonIdentityMismatch, errors.New("login: Panopto sent no id_token, and accounts.identity_claim needs one to tell who signed in")
		}
		h.conn.noIDTokenMu.Do(func() {
			h.log.Warn("Panopto sent no id_token with the login (is openid in oauth.scopes?): the Panopto user is not recorded; this is logged once")
		})
		return nil, "", nil
	}
	creds, err := h.deps.Credentials.Credentials(ctx)
	if err != nil {
		return nil, reasonExchangeFailed, err
	}
	id, err := h.idVerifier(o, creds.ID).VerifyIDToken(ctx, idToken.Reveal(), done.Nonce)
	if err != nil {
		return nil, reasonExchangeFailed, err
	}
	if check {
		if err := login.MatchIdentity(id, claim, o.Connect.IdentityTemplate, done.Account); err != nil {
			return &id, reasonIdentityMismatch, err
		}
	}
	return &id, "", nil
}
