package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// The browser-facing login: GET /-/login starts the authorization-code
// flow (for a student: from a ticket POST /-/connect made), GET /redirect
// completes it, POST /-/logout forgets the grant.

const bindingCookie = "panopto_sidecar_login"

func (h *Handler) login(w http.ResponseWriter, r *http.Request, o *Options) {
	if r.Method == http.MethodHead {
		// Link previews and mail scanners ask before a person opens the
		// link: answer them without redeeming its ticket or starting a login.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return
	}
	// The login cookie must be set on the host the browser will come back
	// to (public_url): send a browser that came in by another name there
	// first (127.0.0.1 vs localhost).
	if pu, err := url.Parse(o.PublicURL); err == nil && pu.Host != "" && !strings.EqualFold(r.Host, pu.Host) {
		target := o.PublicURL + "/-/login"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	q := r.URL.Query()
	account, returnTo := q.Get("account"), ""
	switch ticket := q.Get("ticket"); {
	case ticket != "":
		var ok bool
		if account, returnTo, ok = h.redeem(w, r, o, ticket); !ok {
			return
		}
	case account != "" && o.AccountsMode == token.AccountsLogin:
		// Only OnTrack decides which account a browser logs in for: by
		// the ticket in the link POST /-/connect made.
		h.audit(r, "login", account, reasonTicketInvalid, errors.New("login: a per-account login needs the link from POST /-/connect"))
		page(w, http.StatusForbidden, "Cannot connect an account", "Per-student logins start from the link OnTrack gives you.")
		return
	case account != "":
		page(w, http.StatusBadRequest, "Cannot connect an account", "Per-account logins need accounts.mode: login in config.yaml.")
		return
	}
	creds, err := h.deps.Credentials.Credentials(r.Context())
	if err != nil {
		h.log.Error("login: client credentials unavailable", "err", err)
		page(w, http.StatusServiceUnavailable, "Cannot start the login", "The sidecar has no Panopto client credentials yet. See its log.")
		return
	}
	l := h.deps.Flow.BeginReturning(o.Endpoint, creds.ID, account, returnTo)
	http.SetCookie(w, &http.Cookie{
		Name: bindingCookie, Value: l.Binding, Path: bindingCookiePath(o), MaxAge: 600,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(o.PublicURL, "https://"),
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, l.URL, http.StatusFound)
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request, o *Options) {
	q := r.URL.Query()
	state := q.Get("state")
	var binding string
	if c, err := r.Cookie(bindingCookie); err == nil {
		binding = c.Value
	}
	if e := q.Get("error"); e != "" {
		// End the login so its state cannot be used afterwards; only the
		// browser that started it can.
		done, ferr := h.deps.Flow.Finish(state, binding, o.RequireBrowserBinding)
		reason := reasonExchangeFailed
		msg := "Panopto did not grant access."
		if e == "access_denied" {
			reason, msg = reasonAccessDenied, "Access was denied in Panopto. Nothing was changed."
		}
		if ferr != nil {
			h.log.Warn("login: Panopto answered with an error", "err", sanitize(e))
			page(w, http.StatusBadRequest, "Not connected", msg+" Start again at "+o.PublicURL+"/-/login.")
			return
		}
		h.endLogin(w, r, o, done, nil, reason, errors.New("login: Panopto answered "+sanitize(e)))
		return
	}
	code := q.Get("code")
	if state == "" || code == "" {
		page(w, http.StatusBadRequest, "Not connected", "The callback is missing its code or state. Start again at "+o.PublicURL+"/-/login.")
		return
	}
	done, err := h.deps.Flow.Finish(state, binding, o.RequireBrowserBinding)
	if err != nil {
		h.log.Warn("login: callback refused", "err", err)
		page(w, http.StatusBadRequest, "Not connected", "This login link is unknown, was already used, or has expired ("+err.Error()+"). Start again at "+o.PublicURL+"/-/login.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: "", Path: bindingCookiePath(o), MaxAge: -1})
	m, err := h.deps.Accounts.Manager(r.Context(), done.Account)
	if err != nil {
		h.endLogin(w, r, o, done, nil, reasonExchangeFailed, err)
		return
	}
	// Exchange into a candidate grant; store it only once its identity is
	// checked, so a refused login leaves the account as it was.
	g, idToken, err := m.ExchangeCode(r.Context(), code, done.Verifier)
	if err != nil {
		h.endLogin(w, r, o, done, nil, reasonExchangeFailed, err)
		return
	}
	id, reason, err := h.verifyIdentity(r.Context(), o, done, idToken)
	if reason != "" {
		// Dropped, never stored, never revoked: a provider that revokes
		// per grant (RFC 7009 allows it) would take the grant this Panopto
		// user stored for their own account with it, so anyone could
		// disconnect anyone by handing them a link.
		*g = token.Grant{}
		h.endLogin(w, r, o, done, id, reason, err)
		return
	}
	g.Identity = id
	if err := m.Install(r.Context(), g); err != nil {
		h.endLogin(w, r, o, done, id, reasonExchangeFailed, err)
		return
	}
	h.endLogin(w, r, o, done, id, "", nil)
}

// endLogin leaves the login's audit line, with the Panopto user id names
// (nil: none verified), and sends the browser back to the login's return_to
// with the outcome, or answers the sidecar's own page.
func (h *Handler) endLogin(w http.ResponseWriter, r *http.Request, o *Options, done login.Completed, id *token.Identity, reason string, err error) {
	result := reason
	if result == "" {
		result = "ok"
	}
	h.audit(r, "login", done.Account, result, err, identityAttrs(id)...)
	if done.ReturnTo != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, returnURL(done.ReturnTo, done.Account, reason), http.StatusFound)
		return
	}
	again := " Start again at " + o.PublicURL + "/-/login."
	if done.Account != "" {
		again = " Ask OnTrack for a new login link."
	}
	switch reason {
	case "":
		var until string
		if m, merr := h.deps.Accounts.Manager(r.Context(), done.Account); merr == nil {
			until = " (valid until " + m.Status().ExpiresAt.UTC().Format(time.RFC3339) + ")"
		}
		page(w, http.StatusOK, "Connected to Panopto", "The sidecar holds a Panopto token"+until+" and refreshes it by itself. You can close this page.")
	case reasonAccessDenied:
		page(w, http.StatusBadRequest, "Not connected", "Access was denied in Panopto. Nothing was changed."+again)
	case reasonIdentityMismatch:
		page(w, http.StatusForbidden, "Not connected", "You logged in to Panopto as another user than this link is for. Nothing was changed."+again)
	default:
		page(w, http.StatusBadGateway, "Not connected", "Panopto did not accept the login. See the sidecar's log."+again)
	}
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, o *Options) {
	account := r.URL.Query().Get("account")
	m, err := h.deps.Accounts.Manager(r.Context(), account)
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown_account"})
		return
	}
	revoked, err := h.forget(r.Context(), m, "logout")
	if err != nil {
		h.audit(r, "logout", account, "store_unavailable", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "store_unavailable"})
		return
	}
	h.audit(r, "logout", account, "ok", nil)
	writeJSON(w, http.StatusOK, map[string]any{"status": "logged_out", "revoked": revoked, "login_url": o.PublicURL + "/-/login"})
}

func page(w http.ResponseWriter, code int, title, body string) {
	writeHTML(w, code, "page", struct{ Title, Body string }{title, body})
}

// sanitize bounds a value taken from a request before it is logged.
func sanitize(s string) string { return sanitizeN(s, 64) }

// sanitizeN is sanitize to at most n bytes.
func sanitizeN(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
