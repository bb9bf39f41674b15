package proxy

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/oauth"
)

// The browser-facing login: GET /-/login starts the authorization-code
// flow, GET /redirect completes it, POST /-/logout forgets the grant.

const bindingCookie = "panopto_sidecar_login"

func (h *Handler) login(w http.ResponseWriter, r *http.Request, o *Options) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
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
	account := r.URL.Query().Get("account")
	if account != "" && o.AccountsMode != oauth.AccountsLogin {
		page(w, http.StatusBadRequest, "Cannot connect an account", "Per-account logins need accounts.mode: login in config.yaml.")
		return
	}
	creds, err := h.deps.Credentials().Credentials(r.Context())
	if err != nil {
		h.log.Error("login: client credentials unavailable", "err", err)
		page(w, http.StatusServiceUnavailable, "Cannot start the login", "The sidecar has no Panopto client credentials yet. See its log.")
		return
	}
	l := h.deps.Flow.Begin(o.Endpoint, creds.ID, account)
	http.SetCookie(w, &http.Cookie{
		Name: bindingCookie, Value: l.Binding, Path: "/redirect", MaxAge: 600,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(o.PublicURL, "https://"),
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, l.URL, http.StatusFound)
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request, o *Options) {
	q := r.URL.Query()
	state := q.Get("state")
	if e := q.Get("error"); e != "" {
		// Consume the state so it cannot be used afterwards.
		h.deps.Flow.Complete(state, "", false)
		h.log.Warn("login: Panopto answered with an error", "err", sanitize(e))
		msg := "Panopto did not grant access"
		if e == "access_denied" {
			msg = "Access was denied in Panopto. Nothing was changed."
		}
		page(w, http.StatusBadRequest, "Not connected", msg+" Start again at "+o.PublicURL+"/-/login.")
		return
	}
	code := q.Get("code")
	if state == "" || code == "" {
		page(w, http.StatusBadRequest, "Not connected", "The callback is missing its code or state. Start again at "+o.PublicURL+"/-/login.")
		return
	}
	var binding string
	if c, err := r.Cookie(bindingCookie); err == nil {
		binding = c.Value
	}
	verifier, account, err := h.deps.Flow.Complete(state, binding, o.RequireBrowserBinding)
	if err != nil {
		h.log.Warn("login: callback refused", "err", err)
		page(w, http.StatusBadRequest, "Not connected", "This login link is unknown, was already used, or has expired ("+err.Error()+"). Start again at "+o.PublicURL+"/-/login.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: "", Path: "/redirect", MaxAge: -1})
	m, err := h.deps.Accounts.Manager(r.Context(), account)
	if err != nil {
		page(w, http.StatusBadRequest, "Not connected", "The account cannot be connected.")
		return
	}
	if err := m.Exchange(r.Context(), code, verifier); err != nil {
		h.log.Error("login: code exchange failed", "err", err, "account", account)
		page(w, http.StatusBadGateway, "Not connected", "Panopto did not accept the login. See the sidecar's log, then start again at "+o.PublicURL+"/-/login.")
		return
	}
	st := m.Status()
	page(w, http.StatusOK, "Connected to Panopto", "The sidecar holds a Panopto token (valid until "+st.ExpiresAt.UTC().Format(time.RFC3339)+") and refreshes it by itself. You can close this page.")
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, o *Options) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	account := r.URL.Query().Get("account")
	m, err := h.deps.Accounts.Manager(r.Context(), account)
	if err != nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown_account"})
		return
	}
	g, err := m.Forget(r.Context(), "logout")
	if err != nil {
		h.log.Error("logout: could not remove the grant", "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "store_unavailable"})
		return
	}
	revoked := false
	if g != nil && h.deps.Revoke != nil {
		if err := h.deps.Revoke(r.Context(), g); err != nil {
			h.log.Warn("logout: revocation at Panopto failed; the grant is removed here", "err", err)
		} else {
			revoked = true
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "logged_out", "revoked": revoked, "login_url": o.PublicURL + "/-/login"})
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}} · panopto-sidecar</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Body}}</p></body></html>
`))

func page(w http.ResponseWriter, code int, title, body string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(code)
	_ = pageTmpl.Execute(w, struct{ Title, Body string }{title, body})
}

// sanitize bounds a value taken from a request before it is logged.
func sanitize(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
