package panoptofake

import (
	"context"
	"net/http"
	"net/url"
	"strings"
)

// iisMux is an http.ServeMux that matches paths as Panopto's IIS does:
// regardless of the case of their fixed segments, so /panopto/api/v1/folders
// and /Panopto/PublicAPI/Rest/sessionupload reach the same endpoints as
// /Panopto/api/v1/folders and /Panopto/PublicAPI/REST/sessionUpload.
//
// Before routing, the fixed segments of the pattern a path matches in any
// casing are respelled as registered; wildcard segments (ids, S3 keys) stay
// as sent. The handlers then see the request as sent, so an S3 signature
// is checked against the path the client signed.
type iisMux struct {
	mux      *http.ServeMux
	patterns [][]string // each registered path, split on "/"
}

type sentURLKey struct{}

func newIISMux() *iisMux { return &iisMux{mux: http.NewServeMux()} }

// HandleFunc registers h for pattern, as http.ServeMux.HandleFunc does.
func (m *iisMux) HandleFunc(pattern string, h http.HandlerFunc) {
	path := pattern
	if _, p, ok := strings.Cut(pattern, " "); ok {
		path = strings.TrimLeft(p, " ")
	}
	m.patterns = append(m.patterns, strings.Split(path, "/"))
	m.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if u, ok := r.Context().Value(sentURLKey{}).(*url.URL); ok {
			r = r.WithContext(r.Context()) // keeps the path values
			r.URL = u
		}
		h(w, r)
	})
}

func (m *iisMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := m.respell(r.URL.Path)
	if p == r.URL.Path {
		m.mux.ServeHTTP(w, r)
		return
	}
	u := *r.URL
	u.Path, u.RawPath = p, m.respell(r.URL.RawPath)
	r2 := r.WithContext(context.WithValue(r.Context(), sentURLKey{}, r.URL))
	r2.URL = &u
	m.mux.ServeHTTP(w, r2)
}

// respell returns path with the fixed segments of the registered pattern
// it matches in any casing (the one with the most fixed segments) spelled
// as registered; path itself when it matches none.
func (m *iisMux) respell(path string) string {
	if path == "" {
		return path
	}
	segs := strings.Split(path, "/")
	var best []string
	most := -1
	for _, pat := range m.patterns {
		if n, ok := matchFold(pat, segs); ok && n > most {
			best, most = pat, n
		}
	}
	if best == nil {
		return path
	}
	out := make([]string, len(segs))
	copy(out, segs)
	for i, p := range best {
		if i >= len(out) || p == "" || strings.HasPrefix(p, "{") {
			continue
		}
		out[i] = p
	}
	return strings.Join(out, "/")
}

// matchFold reports whether the path segments segs match the pattern pat
// with fixed segments compared regardless of case, and how many fixed
// segments matched. A pattern ending in "/" or "{name...}" matches the rest.
func matchFold(pat, segs []string) (int, bool) {
	n := 0
	for i, p := range pat {
		last := i == len(pat)-1
		switch {
		case last && (p == "" || strings.HasSuffix(p, "...}")):
			return n, len(segs) > i
		case i >= len(segs):
			return 0, false
		case strings.HasPrefix(p, "{"):
		case strings.EqualFold(p, segs[i]):
			n++
		default:
			return 0, false
		}
	}
	return n, len(segs) == len(pat)
}
