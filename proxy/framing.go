package proxy

import (
	"net"
	"net/http"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/internal/framing"
)

// FramingGuard wraps srv's plain-HTTP listener so that a request whose
// framing is ambiguous (Content-Length and Transfer-Encoding together, a
// folded header line, Transfer-Encoding on HTTP/1.0, a length or coding
// that does not parse: the request-smuggling shapes) reaches the handler
// marked with FramingConflictHeader, and is refused with 400 and a closed
// connection instead of being quietly re-framed; the server reads nothing
// after it. It hooks srv.ConnState (keeping any hook already set) so that
// the guard learns of hijacks: bytes pass unparsed only once a hijacked
// connection has answered 101 Switching Protocols. Call it after setting
// srv.MaxHeaderBytes and srv.ConnState. See package proxy/internal/framing.
func FramingGuard(srv *http.Server, ln net.Listener) net.Listener {
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		framing.ConnState(c, s)
		if prev != nil {
			prev(c, s)
		}
	}
	return framing.Guard(ln, srv.MaxHeaderBytes)
}

// FramingConflictHeader marks a request whose head the guard refuses. A
// client sending it itself just gets the 400.
const FramingConflictHeader = framing.ConflictHeader

// framingRefusal says why a request is refused for its framing, if it is.
func framingRefusal(r *http.Request) (reason string, refused bool) {
	v, ok := r.Header[FramingConflictHeader]
	if !ok {
		return "", false
	}
	if len(v) == 1 {
		if text, known := framing.Reason(v[0]); known {
			return text, true
		}
	}
	return "framing marker sent by the client", true
}
