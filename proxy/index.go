package proxy

import (
	"net/http"
	"strings"
)

// readmeURL is the operator's documentation, linked from the index page.
const readmeURL = "https://github.com/doubtfire-lms/panopto-sidecar#readme"

// indexLinks are the endpoints the index page points an operator to. The
// login link is absolute (public_url), like the one in /-/status: the
// login's cookie must be set on the host the browser comes back to. Where
// no login link works (public_listen), Connect says how accounts connect.
type indexLinks struct {
	Login   string `json:"login,omitempty"`
	Connect string `json:"connect,omitempty"`
	Status  string `json:"status"`
	Healthz string `json:"healthz"`
	Metrics string `json:"metrics"`
	README  string `json:"readme"`
}

type indexData struct {
	Service   string     `json:"service"`
	Connected bool       `json:"connected"`
	Upstream  string     `json:"upstream"`
	Links     indexLinks `json:"links"`
}

// index serves GET / (and HEAD): where the operator is and whether the
// sidecar is connected, as a page for a browser and as JSON otherwise.
func (h *Handler) index(w http.ResponseWriter, r *http.Request, o *Options) {
	d := indexData{
		Service:  "panopto-sidecar",
		Upstream: o.Upstream.String(),
		Links: indexLinks{
			Status:  "/-/status",
			Healthz: "/-/healthz",
			Metrics: "/metrics",
			README:  readmeURL,
		},
	}
	if key, hint := o.loginHint(""); key == "connect" {
		d.Links.Connect = hint
	} else {
		d.Links.Login = hint
	}
	if m := h.defaultManager(r.Context()); m != nil {
		d.Connected = m.Status().Connected
	}
	w.Header().Add("Vary", "Accept")
	if !acceptsHTML(r) {
		writeJSON(w, http.StatusOK, d)
		return
	}
	writeHTML(w, http.StatusOK, "index", d)
}

// acceptsHTML reports whether the client is a browser: its Accept names
// text/html.
func acceptsHTML(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}
