package proxy

import (
	"net"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/internal/framing"
)

// FramingGuard wraps a plain-HTTP listener so that a request carrying both
// Content-Length and Transfer-Encoding (the classic request-smuggling
// shape) reaches the handler marked with FramingConflictHeader, and is
// refused with 400 and a closed connection instead of being quietly
// re-framed. See package proxy/internal/framing.
func FramingGuard(ln net.Listener, maxHeaderBytes int) net.Listener {
	return framing.Guard(ln, maxHeaderBytes)
}

// FramingConflictHeader marks a request whose head held both Content-Length
// and Transfer-Encoding. A client sending it itself just gets the 400.
const FramingConflictHeader = framing.ConflictHeader
