package proxy

import (
	"html/template"
	"net/http"
	"strings"
)

// readmeURL is the operator's documentation, linked from the index page.
const readmeURL = "https://github.com/doubtfire-lms/panopto-sidecar#readme"

// indexLinks are the endpoints the index page points an operator to. The
// login link is absolute (public_url), like the one in /-/status: the
// login's cookie must be set on the host the browser comes back to.
type indexLinks struct {
	Login   string `json:"login"`
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

// The style is the one of the login pages (pageTmpl).
var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>panopto-sidecar</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style>
</head><body><h1>panopto-sidecar</h1>
{{if .Connected}}<p>Connected to Panopto at {{.Upstream}}.</p>
{{else}}<p>Not connected to Panopto at {{.Upstream}}. <a href="{{.Links.Login}}">Log in</a> to connect.</p>
{{end}}<ul>
<li><a href="{{.Links.Login}}">/-/login</a>: connect the sidecar to Panopto</li>
<li><a href="{{.Links.Status}}">/-/status</a>: the token, credentials and configuration in force (JSON)</li>
<li><a href="{{.Links.Healthz}}">/-/healthz</a>: whether the process serves</li>
<li><a href="{{.Links.Metrics}}">/metrics</a>: Prometheus metrics</li>
<li><a href="{{.Links.README}}">README</a>: how to run and use the sidecar</li>
</ul></body></html>
`))

// index serves GET / (and HEAD): where the operator is and whether the
// sidecar is connected, as a page for a browser and as JSON otherwise.
func (h *Handler) index(w http.ResponseWriter, r *http.Request, o *Options) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	d := indexData{
		Service:  "panopto-sidecar",
		Upstream: o.Upstream.String(),
		Links: indexLinks{
			Login:   o.PublicURL + "/-/login",
			Status:  "/-/status",
			Healthz: "/-/healthz",
			Metrics: "/metrics",
			README:  readmeURL,
		},
	}
	if m := h.defaultManager(r.Context()); m != nil {
		d.Connected = m.Status().Connected
	}
	w.Header().Add("Vary", "Accept")
	if !acceptsHTML(r) {
		writeJSON(w, http.StatusOK, d)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(http.StatusOK)
	_ = indexTmpl.Execute(w, d)
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
