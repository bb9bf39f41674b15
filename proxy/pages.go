package proxy

import (
	"html/template"
	"net/http"
)

// pages are the sidecar's few HTML pages (the login pages and the index),
// with one head and one style.
var pages = template.Must(template.New("pages").Parse(`
{{- define "head"}}<!doctype html>
<html><head><meta charset="utf-8"><title>{{.}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}</style>
</head><body>{{end}}

{{- define "page"}}{{template "head" (print .Title " · panopto-sidecar")}}<h1>{{.Title}}</h1><p>{{.Body}}</p></body></html>
{{end}}

{{- define "index"}}{{template "head" "panopto-sidecar"}}<h1>panopto-sidecar</h1>
{{if .Connected}}<p>Connected to Panopto at {{.Upstream}}.</p>
{{else if .Links.Login}}<p>Not connected to Panopto at {{.Upstream}}. <a href="{{.Links.Login}}">Log in</a> to connect.</p>
{{else}}<p>Not connected to Panopto at {{.Upstream}}. Accounts connect through a login link from <code>{{.Links.Connect}}</code>.</p>
{{end}}<ul>
{{if .Links.Login}}<li><a href="{{.Links.Login}}">/-/login</a>: connect the sidecar to Panopto</li>
{{else}}<li><code>{{.Links.Connect}}</code>: a student's login link (on listen, from OnTrack)</li>
{{end}}
<li><a href="{{.Links.Status}}">/-/status</a>: the token, credentials and configuration in force (JSON)</li>
<li><a href="{{.Links.Healthz}}">/-/healthz</a>: whether the process serves</li>
<li><a href="{{.Links.Metrics}}">/metrics</a>: Prometheus metrics</li>
<li><a href="{{.Links.README}}">README</a>: how to run and use the sidecar</li>
</ul></body></html>
{{end}}`))

// writeHTML answers one of pages: never cached, and a policy that allows
// nothing but the inline style.
func writeHTML(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(code)
	_ = pages.ExecuteTemplate(w, name, data)
}
