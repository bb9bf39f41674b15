package proxy

import (
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"
)

// levelFor is the level of a request's log line: failures stand out.
func levelFor(code int) slog.Level {
	if code >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// maxLoggedPath bounds the path in a log line: a client chooses it.
const maxLoggedPath = 256

// loggedPath is a request's path for the log, as the client sent it: still
// escaped, so a path refused for an encoded slash shows its "%2F" rather
// than the "/" it decodes to and does not look like a valid request; never
// the query, which may carry a secret (a login ticket); control characters
// replaced; at most maxLoggedPath bytes.
func loggedPath(r *http.Request) string {
	p := r.RequestURI
	if !strings.HasPrefix(p, "/") {
		// Absolute-form ("http://user:pass@host/…"), "*", CONNECT's
		// authority, or a request built in-process: only the path, so no
		// user information reaches the log.
		p = r.URL.EscapedPath()
	}
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	cut := false
	if len(p) > maxLoggedPath {
		n := maxLoggedPath
		for n > 0 && !utf8.RuneStart(p[n]) {
			n--
		}
		p, cut = p[:n], true
	}
	if strings.ContainsFunc(p, isControl) {
		p = strings.Map(func(c rune) rune {
			if isControl(c) {
				return '?'
			}
			return c
		}, p)
	}
	if cut {
		p += "…"
	}
	return p
}

func isControl(c rune) bool { return c < 0x20 || c == 0x7f }
