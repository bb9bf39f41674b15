package proxy

import (
	"net/url"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
)

// Route is one prefix of the upstream's path space that is forwarded.
type Route struct {
	Prefix string
	Inject bool // replace the inbound Authorization with the current bearer
}

// RoutesMatch says how a request path is compared with the routes'
// prefixes. Only the match is affected: the path is forwarded as sent.
type RoutesMatch string

const (
	// RoutesCaseInsensitive matches ASCII letters regardless of case, as
	// Panopto's IIS does: /panopto/api/ and /Panopto/PublicAPI/Rest/ reach
	// the same endpoints as /Panopto/api/ and /Panopto/PublicAPI/REST/.
	// "" means the same.
	RoutesCaseInsensitive RoutesMatch = "case_insensitive"
	// RoutesExact matches the prefix byte for byte.
	RoutesExact RoutesMatch = "exact"
)

// matchRoute returns the first route whose prefix starts path.
func matchRoute(routes []Route, path string, m RoutesMatch) *Route {
	for i := range routes {
		if m == RoutesExact && strings.HasPrefix(path, routes[i].Prefix) ||
			m != RoutesExact && ascii.HasPrefixFold(path, routes[i].Prefix) {
			return &routes[i]
		}
	}
	return nil
}

// cleanPath reports whether a request path is safe to forward: absolute, no
// dot segments, no empty segments, no backslash, NUL or line break, and no
// encoded dot, slash or backslash that an upstream might decode into a path
// outside the route, even if it decodes the path once or twice more.
func cleanPath(decoded, raw string) bool {
	if !safeSegments(decoded) {
		return false
	}
	if strings.IndexByte(raw, '%') < 0 {
		return true
	}
	lower := strings.ToLower(raw)
	for _, bad := range []string{"%2e", "%2f", "%5c", "%00"} {
		if strings.Contains(lower, bad) {
			return false
		}
	}
	// A literal "%" may stay (S3 keys hold one), but what further decoding
	// makes of the path must be as safe as the path itself.
	cur := decoded
	for range 3 {
		if strings.IndexByte(cur, '%') < 0 {
			break
		}
		next, err := url.PathUnescape(cur)
		if err != nil || next == cur {
			break
		}
		if !safeSegments(next) || strings.Count(next, "/") != strings.Count(cur, "/") {
			return false
		}
		cur = next
	}
	return true
}

func safeSegments(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00\r\n") || strings.Contains(p, "//") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
