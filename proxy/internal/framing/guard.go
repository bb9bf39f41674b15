// Package framing guards a plain-HTTP listener against request smuggling:
// it follows the request framing on the wire as Go's HTTP/1 server reads
// it, and marks any head whose framing is ambiguous (Content-Length and
// Transfer-Encoding together, a folded header line, Transfer-Encoding on
// HTTP/1.0, a length or coding that does not parse) so the handler can
// refuse it, since Go's server re-frames or ignores some of these before a
// handler could see them.
package framing

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Guard wraps a plain-HTTP/1 listener so that a request whose framing is
// ambiguous (the request-smuggling shapes) is refused with 400 and a
// closed connection instead of being quietly re-framed. It reads the
// request framing on the wire: it follows each request's head, body (by
// length or by chunks) and trailers exactly as Go's server does, and marks
// a head it refuses with ConflictHeader (the value says why), which the
// handler answers with 400 and a closed connection. After a refused head
// the server reads nothing more from the connection: not the body, not a
// pipelined request. The same holds where the guard cannot follow the
// framing (a malformed chunk, a head larger than the server accepts
// (maxHeaderBytes; 0: 1 MiB)): the server gets the bytes so far, then end
// of stream. Bytes are never reordered or changed; the only addition is
// the marker line.
//
// Bytes pass unparsed only once the connection has switched protocols: the
// server hijacked it (ConnState must be the server's ConnState hook, or be
// called from it) and the first bytes written after the hijack are a
// "101 Switching Protocols" status line. A request asking for an Upgrade
// that is answered otherwise stays HTTP, and so does the guard.
func Guard(ln net.Listener, maxHeaderBytes int) net.Listener {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = 1 << 20
	}
	// The server reads at most maxHeaderBytes+4096 for a head, plus what its
	// 4 KiB buffer already held: a longer head is refused by it for sure.
	return &guardListener{Listener: ln, max: maxHeaderBytes + 16<<10}
}

// ConflictHeader marks a request whose head the guard refuses; its value is
// one of the Reason… constants. A client sending it itself just gets the
// 400.
const ConflictHeader = "X-Sidecar-Framing-Conflict"

// ConnState tells the guard that the server hijacked a connection. Call it
// from http.Server.ConnState for a server serving a guarded listener.
func ConnState(c net.Conn, s http.ConnState) {
	if g, ok := c.(*guardConn); ok && s == http.StateHijacked {
		g.hijacked.Store(true)
	}
}

type guardListener struct {
	net.Listener
	max int
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, max: l.max}, nil
}

type framingState int

const (
	stHead        framingState = iota // collecting a request head
	stBody                            // remaining bytes of a Content-Length body
	stChunkSize                       // a chunk-size line
	stChunkData                       // remaining bytes of a chunk
	stChunkCRLF                       // the CRLF after a chunk's data
	stTrailers                        // trailer lines after the last chunk
	stStopped                         // refused or not followed: end of stream for the server
	stPassthrough                     // switched protocols: no longer HTTP
)

const (
	maxChunkLine = 4096 // a chunk-size line, CRLF included (Go's read buffer)
	maxTrailers  = 4096 // all trailer lines (Go looks that far for their end)
	keepBuf      = 64 << 10
)

type guardConn struct {
	net.Conn
	max int

	// Read side. The server reads from one goroutine at a time; the lock
	// keeps a hijacker's reads as safe.
	mu      sync.Mutex
	state   framingState
	line    []byte // the head being collected (stHead), or the current line
	remain  uint64 // bytes left in stBody / stChunkData; CRLF bytes seen in stChunkCRLF
	excess  int64  // chunk overhead, counted as Go's chunked reader counts it
	trailer int    // trailer bytes so far
	out     []byte // bytes ready for the server: out[outOff:]
	outOff  int
	onHead  func(off int64) // tests: each head's offset in what the server reads
	emitted int64           // bytes handed to the server so far, marker lines included

	// Write side: after a hijack, the first bytes written decide whether
	// the connection switched protocols.
	hijacked atomic.Bool
	upgraded atomic.Bool
	settled  atomic.Bool
	wmu      sync.Mutex
	first    [len("HTTP/1.1 101 ")]byte
	nfirst   int
}

func (c *guardConn) Write(p []byte) (int, error) {
	if c.hijacked.Load() && !c.settled.Load() {
		c.watch(p)
	}
	return c.Conn.Write(p)
}

// watch collects the first bytes written after a hijack and decides, before
// they reach the client, whether they switch protocols.
func (c *guardConn) watch(p []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.settled.Load() {
		return
	}
	c.nfirst += copy(c.first[c.nfirst:], p)
	if c.nfirst < len(c.first) {
		return
	}
	s := c.first[:]
	if (string(s[:9]) == "HTTP/1.1 " || string(s[:9]) == "HTTP/1.0 ") && string(s[9:12]) == "101" && (s[12] == ' ' || s[12] == '\r') {
		c.upgraded.Store(true)
	}
	c.settled.Store(true)
}

func (c *guardConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.outOff < len(c.out) {
			n := copy(p, c.out[c.outOff:])
			c.outOff += n
			if c.outOff == len(c.out) {
				c.out, c.outOff = c.out[:0], 0
				if cap(c.out) > keepBuf {
					c.out = nil
				}
			}
			return n, nil
		}
		if len(p) == 0 {
			return 0, nil
		}
		if c.state != stPassthrough && c.state != stStopped && c.upgraded.Load() {
			// What the guard held back (part of a line) goes first.
			c.state = stPassthrough
			c.emit(c.line)
			c.line = nil
			continue
		}
		switch c.state {
		case stStopped:
			return 0, io.EOF
		case stPassthrough:
			return c.Conn.Read(p)
		case stBody, stChunkData:
			// Body bytes go straight into the caller's buffer; what follows
			// the body goes through the framing machine.
			if uint64(len(p)) > c.remain {
				p = p[:c.remain]
			}
			n, err := c.Conn.Read(p)
			c.remain -= uint64(n)
			c.emitted += int64(n)
			c.afterData()
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		// Read into the caller's buffer: what the server may read is
		// copied to c.out and handed back from there. An idle connection,
		// blocked here, then holds no read buffer of the guard's own.
		n, err := c.Conn.Read(p)
		if n > 0 {
			if c.upgraded.Load() && c.state != stStopped {
				c.state = stPassthrough
				c.emit(c.line)
				c.line = nil
				c.emit(p[:n])
			} else {
				c.feed(p[:n])
			}
		}
		if c.outOff < len(c.out) {
			continue // what is ready first; a read error comes back on the next call
		}
		if err != nil {
			if len(c.line) > 0 && errors.Is(err, io.EOF) {
				// An incomplete line at EOF: hand it over as it is.
				c.emit(c.line)
				c.line = c.line[:0]
				c.state = stStopped
				continue
			}
			return 0, err
		}
	}
}

// emit appends b to the bytes ready for the server.
func (c *guardConn) emit(b []byte) {
	c.out = append(c.out, b...)
	c.emitted += int64(len(b))
}

// stop hands over what is held and ends the stream for the server.
func (c *guardConn) stop() {
	c.emit(c.line)
	c.line = c.line[:0]
	c.state = stStopped
}

// afterData moves on once a body or a chunk's data is complete.
func (c *guardConn) afterData() {
	if c.remain > 0 {
		return
	}
	switch c.state {
	case stBody:
		c.state = stHead
	case stChunkData:
		c.state, c.remain = stChunkCRLF, 0
	}
}

// feed runs the framing state machine over data and appends what the server
// may read to c.out.
func (c *guardConn) feed(data []byte) {
	for len(data) > 0 {
		switch c.state {
		case stStopped:
			return // nothing more for the server
		case stPassthrough:
			c.emit(data)
			return
		case stBody, stChunkData:
			n := uint64(len(data))
			if n > c.remain {
				n = c.remain
			}
			c.emit(data[:n])
			data = data[n:]
			c.remain -= n
			c.afterData()
		case stChunkCRLF:
			// Exactly CRLF after a chunk's data, as Go requires.
			want := byte('\r')
			if c.remain == 1 {
				want = '\n'
			}
			c.emit(data[:1])
			if data[0] != want {
				c.stop()
				return
			}
			data = data[1:]
			c.remain++
			if c.remain == 2 {
				c.state, c.remain = stChunkSize, 0
			}
		case stHead:
			if len(c.line) == 0 {
				// Go skips CR and LF before a request line (after a POST;
				// elsewhere it refuses the request): they belong to no head.
				i := 0
				for i < len(data) && (data[i] == '\r' || data[i] == '\n') {
					i++
				}
				c.emit(data[:i])
				if data = data[i:]; len(data) == 0 {
					return
				}
			}
			data = c.collect(data, c.max)
		case stChunkSize:
			data = c.collect(data, maxChunkLine)
		case stTrailers:
			data = c.collect(data, maxTrailers-c.trailer)
		}
	}
}

// collect adds data up to the first line end to c.line, handles a complete
// line, and returns the rest. A line longer than limit stops the guard.
func (c *guardConn) collect(data []byte, limit int) []byte {
	i := 0
	for i < len(data) && data[i] != '\n' {
		i++
	}
	complete := i < len(data)
	if complete {
		i++
	}
	c.line = append(c.line, data[:i]...)
	if len(c.line) > limit {
		c.stop()
		return nil
	}
	if complete {
		c.endLine()
	}
	return data[i:]
}

// endLine handles a complete line at the end of c.line.
func (c *guardConn) endLine() {
	ln := c.line
	switch c.state {
	case stHead:
		// The head ends with an empty line.
		n := len(ln)
		if n < 2 || ln[n-2] != '\n' && (ln[n-2] != '\r' || n < 3 || ln[n-3] != '\n') {
			return
		}
		c.endHead()
	case stChunkSize:
		// Go: CRLF-terminated, no other CR; then the size.
		n := len(ln)
		if n < 2 || ln[n-2] != '\r' || bytesIndexCR(ln[:n-2]) {
			c.stop()
			return
		}
		size, ok := parseChunkSize(ln[:n-2])
		if !ok {
			c.stop()
			return
		}
		c.excess += int64(n)
		c.excess -= 16 + 2*int64(size)
		c.excess = max(c.excess, 0)
		if c.excess > 16*1024 {
			c.stop()
			return
		}
		c.emit(ln)
		c.line = ln[:0]
		if size == 0 {
			c.state, c.trailer = stTrailers, 0
		} else {
			c.state, c.remain = stChunkData, size
		}
	case stTrailers:
		if len(ln) == 2 && ln[0] == '\r' {
			c.emit(ln)
			c.line = ln[:0]
			c.state = stHead
			return
		}
		if !trailerLine(ln) {
			c.stop()
			return
		}
		c.trailer += len(ln)
		c.emit(ln)
		c.line = ln[:0]
	}
}

func bytesIndexCR(b []byte) bool {
	for _, x := range b {
		if x == '\r' {
			return true
		}
	}
	return false
}

// endHead inspects a complete request head and decides the body framing.
func (c *guardConn) endHead() {
	head := c.line
	if c.onHead != nil {
		c.onHead(c.emitted)
	}
	v := inspect(head)
	if v.refuse != "" {
		// Insert the marker as the head's last header line (so no folded
		// line can join it), hand the head over, and nothing after it.
		j := len(head) - 1 // the empty line that ends the head: "\n" or "\r\n"
		if head[j-1] == '\r' {
			j--
		}
		c.emit(head[:j])
		c.out = append(c.out, ConflictHeader+": "...)
		c.out = append(c.out, v.refuse...)
		c.out = append(c.out, "\r\n"...)
		c.emitted += int64(len(ConflictHeader) + 4 + len(v.refuse))
		c.emit(head[j:])
		c.line = head[:0]
		c.state = stStopped
		return
	}
	c.emit(head)
	c.line = head[:0]
	if cap(c.line) > keepBuf {
		c.line = nil
	}
	switch {
	case v.chunked:
		c.state, c.excess = stChunkSize, 0
	case v.length > 0:
		c.state, c.remain = stBody, v.length
	default:
		c.state = stHead
	}
}
