//go:build !unix

package proxy

// stillOpen cannot peek at a socket on this platform; a closed connection
// then surfaces as the request's error.
func (pc *upstreamConn) stillOpen() bool { return pc.br.Buffered() == 0 }
