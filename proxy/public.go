package proxy

import (
	"net/http"
	"net/url"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/oauth"
)

// Public returns the handler of the public listener (public_listen): the
// browser-facing pages of a student's login and nothing else. It serves GET
// /-/login (with a ticket only), GET /redirect and /-/healthz; every other
// path, proxy routes, /-/connect, /-/accounts/…, /-/status and /metrics
// included, is 404. No inbound authentication applies here: a browser
// cannot present it, and nothing here acts without a ticket or a pending
// login's state.
func (h *Handler) Public() http.Handler { return publicHandler{h} }

type publicHandler struct{ h *Handler }

func (p publicHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := p.h
	o := h.opts.Load()
	if h.refuseMalformed(w, r) {
		return
	}
	switch r.URL.Path {
	case "/-/healthz":
		h.healthz(w, r)
	case "/-/login":
		if r.URL.Query().Get("ticket") == "" {
			// The operator's login (the default grant) is on listen only.
			page(w, http.StatusForbidden, "Cannot start a login here", "Logins start from the link OnTrack gives you.")
			return
		}
		h.login(w, r, o)
	case "/redirect":
		h.callback(w, r, o)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	}
}

// connectHint is what an answer says in place of a login URL where none
// works: per-student accounts connect through a link from POST /-/connect.
const connectHint = "POST /-/connect"

// loginHint is where an answer sends someone to connect account ("" is the
// default grant): the key "login_url" with a URL that starts a login, or
// the key "connect" with connectHint where no login URL would work. In
// login mode an account's /-/login needs a ticket (403 without); with
// public_listen, public_url serves only ticketed logins, so the default
// grant's /-/login there is 403 as well.
func (o *Options) loginHint(account string) (key, value string) {
	switch {
	case account != "" && o.AccountsMode == oauth.AccountsLogin, account == "" && o.PublicListen:
		return "connect", connectHint
	case account != "":
		return "login_url", o.PublicURL + "/-/login?account=" + url.QueryEscape(account)
	}
	return "login_url", o.PublicURL + "/-/login"
}
