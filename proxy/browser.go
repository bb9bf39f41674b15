package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
)

// The listener's defences against web browsers. A page in any browser on
// the machine can send requests to 127.0.0.1:9127: simple ones (a form
// post, a text/plain fetch) without asking first, and, under a name of its
// own that it rebinds to 127.0.0.1, read the answers as its own. OnTrack's
// Ruby, curl and Go clients send neither Origin nor Sec-Fetch-*, name the
// sidecar in Host and are not affected. The public listener (public.go) is
// for browsers and is left alone.

// refuseForeign answers a request on listen that came by a name that is not
// the sidecar's (421: DNS rebinding) or from a page of another site (403:
// request forgery), and reports whether it did. Nothing is forwarded.
func (h *Handler) refuseForeign(w http.ResponseWriter, r *http.Request, o *Options) bool {
	if !hostAllowed(r, o) {
		h.refusedBrowser(r, http.StatusMisdirectedRequest, "host not allowed", slog.String("host", sanitize(r.Host)))
		writeJSON(w, http.StatusMisdirectedRequest, map[string]string{
			"error":  "misdirected_request",
			"detail": "the Host header does not name this sidecar; add the name to inbound.allowed_hosts",
		})
		return true
	}
	if fromOtherSite(r, o) && !topLevelNavigation(r, o) {
		h.refusedBrowser(r, http.StatusForbidden, "cross-origin request",
			slog.String("origin", sanitize(r.Header.Get("Origin"))),
			slog.String("sec_fetch_site", sanitize(r.Header.Get("Sec-Fetch-Site"))))
		writeJSON(w, http.StatusForbidden, map[string]string{
			"error":  "cross_origin_refused",
			"detail": "requests from web pages of other sites are refused",
		})
		return true
	}
	return false
}

// refuseContentType answers, with 415, a request to an endpoint that acts
// whose body a page of another site could send without a CORS preflight,
// and reports whether it did: POST /-/connect, POST /-/logout and DELETE
// /-/accounts/… need Content-Type: application/json; POST /-/uploads takes
// any type but the three a form or a simple fetch may send.
func (h *Handler) refuseContentType(w http.ResponseWriter, r *http.Request) bool {
	p, mt := r.URL.Path, mediaType(r)
	var detail string
	switch {
	case r.Method == http.MethodPost && (p == "/-/connect" || p == "/-/logout"),
		r.Method == http.MethodDelete && strings.HasPrefix(p, "/-/accounts/"):
		if mt == "application/json" {
			return false
		}
		detail = "send Content-Type: application/json"
	case r.Method == http.MethodPost && p == "/-/uploads":
		switch mt {
		case "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		default:
			return false
		}
		detail = "send the video as its own type (video/mp4, application/octet-stream) or none; text/plain, application/x-www-form-urlencoded and multipart/form-data are refused"
	default:
		return false
	}
	h.refusedBrowser(r, http.StatusUnsupportedMediaType, "content type", slog.String("content_type", sanitize(mt)))
	writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "unsupported_media_type", "detail": detail})
	return true
}

// refusedBrowser is refused with attributes that say what was refused.
func (h *Handler) refusedBrowser(r *http.Request, code int, reason string, attrs ...slog.Attr) {
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "request refused", append([]slog.Attr{
		slog.String("method", r.Method), slog.String("path", loggedPath(r)),
		slog.Int("status", code), slog.String("reason", reason),
	}, attrs...)...)
}

// mediaType is the request's Content-Type without parameters, in lower
// case; "" when there is none.
func mediaType(r *http.Request) string {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// hostAllowed reports whether r's Host names the sidecar: a loopback name
// (localhost, 127.0.0.1, [::1]) or the address the connection came in on,
// with any port; public_url's host with any port; or one of
// o.AllowedHosts (a name with any port, a name:port with that port). A
// request without a Host (HTTP/1.0) passes: no browser sends one, so it
// cannot be a page's. Names are compared ignoring ASCII case.
func hostAllowed(r *http.Request, o *Options) bool {
	if r.Host == "" {
		return true
	}
	name, port := splitHost(r.Host)
	if isLoopbackName(name) {
		return true
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
			if local, ok := netip.AddrFromSlice(a.IP); ok && local.Unmap() == ip.WithZone("").Unmap() {
				return true
			}
		}
	}
	if _, hp, ok := strings.Cut(o.PublicURL, "://"); ok {
		hp, _, _ = strings.Cut(hp, "/")
		if pn, _ := splitHost(hp); pn != "" && ascii.EqualFold(name, pn) {
			return true
		}
	}
	for _, a := range o.AllowedHosts {
		an, ap := splitHost(a)
		if ascii.EqualFold(name, an) && (ap == "" || ap == port) {
			return true
		}
	}
	return false
}

// splitHost splits "name:port", "[v6]:port", "name" or "[v6]" into the
// name (no brackets) and the port ("" when none).
func splitHost(hostport string) (name, port string) {
	if n, p, err := net.SplitHostPort(hostport); err == nil {
		return n, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
}

func isLoopbackName(name string) bool {
	return ascii.EqualFold(name, "localhost") || name == "127.0.0.1" || name == "::1"
}

// fromOtherSite reports whether a browser says r comes from a page that is
// not the sidecar's own: Sec-Fetch-Site cross-site or same-site, or an
// Origin other than the origin r was sent to (its scheme and Host) or
// public_url's. "Origin: null" (a sandboxed or opaque page) is another
// site's. Without either header (curl, Ruby, Go) it is not.
func fromOtherSite(r *http.Request, o *Options) bool {
	switch strings.ToLower(r.Header.Get("Sec-Fetch-Site")) {
	case "cross-site", "same-site":
		return true
	}
	origins, ok := r.Header["Origin"]
	if !ok {
		return false
	}
	if len(origins) != 1 {
		return true
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	origin := origins[0]
	return !ascii.EqualFold(origin, scheme+r.Host) && !ascii.EqualFold(origin, strings.TrimSuffix(o.PublicURL, "/"))
}

// topLevelNavigation reports whether r is a browser navigating to one of
// the pages a person opens from elsewhere: the index, the login, Panopto's
// redirect back (a navigation from Panopto's site), the status and
// healthz. Only GET and HEAD, with Sec-Fetch-Mode: navigate.
func topLevelNavigation(r *http.Request, o *Options) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead ||
		!strings.EqualFold(r.Header.Get("Sec-Fetch-Mode"), "navigate") {
		return false
	}
	switch p := r.URL.Path; p {
	case "/-/login", "/redirect", "/-/status", "/-/healthz":
		return true
	case "/":
		// The index, unless a route forwards "/".
		return matchRoute(o.Routes, p, o.RoutesMatch) == nil
	}
	return false
}
