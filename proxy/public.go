package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Public returns the handler of the public listener (public_listen): the
// browser-facing pages of a student's login and nothing else. It serves GET
// /-/login (with a ticket only), GET /redirect and /-/healthz; every other
// path, proxy routes, /-/connect, /-/accounts/…, /-/status and /metrics
// included, is 404. No inbound authentication applies here: a browser
// cannot present it, and nothing here acts without a ticket or a pending
// login's state.
//
// When public_url has a path (https://ontrack.example/panopto, behind a
// reverse proxy), the pages are served both at the root (the proxy strips
// the prefix) and under the prefix (the proxy passes the path as is).
func (h *Handler) Public() http.Handler { return publicHandler{h} }

type publicHandler struct{ h *Handler }

// publicPatterns are the public listener's endpoints.
func (h *Handler) publicPatterns() []pattern {
	return []pattern{
		{"GET /-/healthz", h.healthz},
		{"GET /-/login", h.publicLogin},
		{"GET /redirect", h.callback},
	}
}

func (p publicHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := p.h
	o := h.opts.Load()
	if h.refuseMalformed(w, r) {
		return
	}
	path := trimPublicPath(o, r.URL.Path)
	if _, ok := h.public.match(path); !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	h.public.serve(w, r, path, path, o)
}

// publicLogin is /-/login on the public listener: ticketed logins only.
func (h *Handler) publicLogin(w http.ResponseWriter, r *http.Request, o *Options) {
	if r.URL.Query().Get("ticket") == "" {
		// The operator's login (the default grant) is on listen only.
		page(w, http.StatusForbidden, "Cannot start a login here", "Logins start from the link OnTrack gives you.")
		return
	}
	h.login(w, r, o)
}

// connectHint is what an answer says in place of a login URL where none
// works: per-student accounts connect through a link from POST /-/connect.
const connectHint = "POST /-/connect"

// idpHint says how an account gets its grant in accounts.mode idp, where
// no login URL applies: the sidecar signs in as the user itself.
const idpHint = "the sidecar obtains this account's grant itself with the identity provider's password grant; its last_error says why it could not"

// loginHint is where an answer sends someone to connect account ("" is the
// default grant): the key "login_url" with a URL that starts a login, or
// the key "connect" with connectHint where no login URL would work. In
// login mode an account's /-/login needs a ticket (403 without); with
// public_listen, public_url serves only ticketed logins, so the default
// grant's /-/login there is 403 as well. In idp mode an account has no
// login at all (its /-/login?account= is 400): the key "connect" says so.
func (o *Options) loginHint(account string) (key, value string) {
	switch {
	case account != "" && o.AccountsMode == token.AccountsLogin, account == "" && o.PublicListen:
		return "connect", connectHint
	case account != "" && o.AccountsMode == token.AccountsIdP:
		return "connect", idpHint
	case account != "":
		return "login_url", o.PublicURL + "/-/login?account=" + url.QueryEscape(account)
	}
	return "login_url", o.PublicURL + "/-/login"
}

// publicPath is public_url's path: "" or a prefix such as /panopto under
// which browsers reach the login pages through a reverse proxy.
func publicPath(o *Options) string {
	u, err := url.Parse(o.PublicURL)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

// trimPublicPath removes public_url's path prefix from p, if p is under it.
func trimPublicPath(o *Options, p string) string {
	if pre := publicPath(o); pre != "" && strings.HasPrefix(p, pre+"/") {
		return p[len(pre):]
	}
	return p
}

// bindingCookiePath scopes the login's binding cookie to the redirect URI
// as the browser sees it: public_url's path + /redirect.
func bindingCookiePath(o *Options) string { return publicPath(o) + "/redirect" }
