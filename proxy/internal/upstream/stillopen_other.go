//go:build !unix

package upstream

// stillOpen is the fallback where a socket cannot be peeked at without
// blocking (Windows, Plan 9, js, wasip1): it only checks that the upstream
// sent nothing unasked. A connection the upstream closed while idle then
// surfaces as the error of the request sent on it, which a replayable
// request survives by being sent again (see Transport.RoundTrip).
func (pc *conn) stillOpen() bool { return pc.br.Buffered() == 0 }
