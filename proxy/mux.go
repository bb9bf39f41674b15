package proxy

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The listener's own endpoints are method patterns on an http.ServeMux:
// a request with another method is answered 405 with the Allow header the
// mux computes (GET patterns serve HEAD too). Everything else goes to the
// forwarder without passing the mux, which cleans paths and redirects
// non-canonical ones: a proxied path reaches Panopto byte for byte, and a
// path such as /-//connect or /-/../x is the forwarder's to refuse.

// endpoint serves one of the listener's own paths with the options in
// force when the request came in (see endpoints.serve).
type endpoint func(w http.ResponseWriter, r *http.Request, o *Options)

type optionsKey struct{}

func (f endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f(w, r, r.Context().Value(optionsKey{}).(*Options))
}

// pattern is one endpoint: "METHOD /path" in ServeMux syntax. A wildcard
// may only be the last segment: {name} (one name, which may hold slashes:
// see endpoints.match) or {$}.
type pattern struct {
	pattern string
	h       endpoint
}

// endpoints is a listener's own paths.
type endpoints struct {
	mux *http.ServeMux
	// paths are the endpoints' exact paths; subtrees the prefixes a name
	// follows (/-/accounts/ of /-/accounts/{account}).
	paths    map[string]bool
	subtrees []string
}

func newEndpoints(ps []pattern) *endpoints {
	e := &endpoints{mux: http.NewServeMux(), paths: map[string]bool{}}
	for _, p := range ps {
		e.mux.Handle(p.pattern, p.h)
		_, path, _ := strings.Cut(p.pattern, " ")
		prefix, wildcard, ok := strings.Cut(path, "{")
		switch {
		case !ok || wildcard == "$}":
			e.paths[prefix] = true
		case !slices.Contains(e.subtrees, prefix):
			e.subtrees = append(e.subtrees, prefix)
		}
	}
	return e
}

// match reports whether the decoded request path p is one of the
// endpoints' (exactly as written: /-/Status is not /-/status), and the
// escaped path the mux is to match for it. A name after a subtree's prefix
// is one segment to the mux, however many slashes or dot segments it
// holds, so the mux neither cleans nor redirects it and the endpoint judges
// it: /-/accounts/a/b and /-/accounts/../connect are the invalid account
// names "a/b" and "../connect".
func (e *endpoints) match(p string) (escaped string, ok bool) {
	if e.paths[p] {
		return p, true
	}
	for _, s := range e.subtrees {
		if name, ok := strings.CutPrefix(p, s); ok {
			seg := url.PathEscape(name) // "/" as %2F
			if seg == "." || seg == ".." {
				seg = strings.ReplaceAll(seg, ".", "%2E")
			}
			return s + seg, true
		}
	}
	return "", false
}

// serve answers r, whose path is one of the endpoints' (match), with the
// decoded path p and its escaped form for the mux. Where no pattern has r's
// method it answers 405 with the mux's Allow; where none matches at all (an
// empty name: /-/accounts/), 404. Both in JSON, like every other answer.
func (e *endpoints) serve(w http.ResponseWriter, r *http.Request, p, escaped string, o *Options) {
	r = r.WithContext(context.WithValue(r.Context(), optionsKey{}, o))
	u := *r.URL
	u.Path, u.RawPath = p, escaped
	r.URL = &u
	h, pattern := e.mux.Handler(r)
	if pattern != "" {
		e.mux.ServeHTTP(w, r)
		return
	}
	// The mux's own answer, as a header and a status.
	a := &muxAnswer{header: http.Header{}}
	h.ServeHTTP(a, r)
	if a.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", a.header.Get("Allow"))
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
}

// muxAnswer keeps the status and header of the mux's own answers (405,
// 404) and drops their plain-text body.
type muxAnswer struct {
	header http.Header
	code   int
}

func (a *muxAnswer) Header() http.Header { return a.header }

func (a *muxAnswer) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
}

func (a *muxAnswer) Write(b []byte) (int, error) {
	a.WriteHeader(http.StatusOK)
	return len(b), nil
}
