// Package framing guards a plain-HTTP listener against request smuggling:
// a request carrying both Content-Length and Transfer-Encoding is marked so
// the handler can refuse it, since Go's server drops the Content-Length
// before a handler could see it.
package framing

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
)

// Guard wraps a plain-HTTP listener so that a request carrying both
// Content-Length and Transfer-Encoding (the classic request-smuggling
// shape) can be refused with 400 instead of being quietly re-framed. It
// reads the request framing on the wire: it follows each request's head,
// body (by length or by chunks) and trailers, and marks a head that holds
// both headers with ConflictHeader, which the handler answers with 400 and
// a closed connection. Bytes are never reordered or dropped; the only
// change is the inserted marker line. A connection that asks for an
// Upgrade, or whose head is larger than the server accepts
// (maxHeaderBytes; 0: 1 MiB), is passed through untouched from then on
// (the server refuses oversized heads).
func Guard(ln net.Listener, maxHeaderBytes int) net.Listener {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = 1 << 20
	}
	return &guardListener{Listener: ln, max: maxHeaderBytes + 4096}
}

// ConflictHeader marks a request whose head held both Content-Length and
// Transfer-Encoding. A client sending it itself just gets the 400.
const ConflictHeader = "X-Sidecar-Framing-Conflict"

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
	stPassthrough                     // no longer followed
)

type guardConn struct {
	net.Conn
	max int

	mu      sync.Mutex // Read is called from the server's goroutines one at a time, but be safe
	state   framingState
	head    []byte // the head being collected (stHead), or the current line (chunk size, trailers)
	remain  int64  // bytes left in stBody / stChunkData / stChunkCRLF
	out     []byte // bytes ready for the server, not yet returned
	readBuf []byte
}

func (c *guardConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			if len(c.out) == 0 {
				c.out = nil
			}
			return n, nil
		}
		if len(p) == 0 {
			return 0, nil
		}
		switch c.state {
		case stPassthrough:
			return c.Conn.Read(p)
		case stBody, stChunkData:
			// Body bytes go straight into the caller's buffer; only what
			// follows the body is kept back for the framing machine.
			n, err := c.Conn.Read(p)
			if int64(n) <= c.remain {
				c.remain -= int64(n)
				c.afterBody()
				return n, err
			}
			body := int(c.remain)
			c.remain = 0
			c.afterBody()
			c.feed(p[body:n])
			if body > 0 {
				return body, nil
			}
			continue
		}
		if c.readBuf == nil {
			c.readBuf = make([]byte, 16<<10)
		}
		n, err := c.Conn.Read(c.readBuf)
		if n > 0 {
			c.feed(c.readBuf[:n])
		}
		if len(c.out) > 0 {
			continue // what is ready first; a read error comes back on the next call
		}
		if err != nil {
			if len(c.head) > 0 && errors.Is(err, io.EOF) {
				// An incomplete head at EOF: hand it over as it is.
				c.out, c.head = c.head, nil
				continue
			}
			return 0, err
		}
	}
}

// afterBody moves on once a body or a chunk's data is complete.
func (c *guardConn) afterBody() {
	if c.remain > 0 {
		return
	}
	switch c.state {
	case stBody:
		c.state = stHead
	case stChunkData:
		c.state, c.remain = stChunkCRLF, 2
	}
}

// feed runs the framing state machine over data and appends what the server
// may read to c.out.
func (c *guardConn) feed(data []byte) {
	for len(data) > 0 {
		switch c.state {
		case stPassthrough:
			c.out = append(c.out, data...)
			return
		case stBody, stChunkData, stChunkCRLF:
			n := int64(len(data))
			if n > c.remain {
				n = c.remain
			}
			c.out = append(c.out, data[:n]...)
			data = data[n:]
			c.remain -= n
			if c.remain == 0 {
				if c.state == stChunkCRLF {
					c.state = stChunkSize
				} else {
					c.afterBody()
				}
			}
		case stHead, stChunkSize, stTrailers:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				c.head = append(c.head, data...)
				data = nil
			} else {
				c.head = append(c.head, data[:i+1]...)
				data = data[i+1:]
				c.line()
			}
			if len(c.head) > c.max {
				c.out = append(c.out, c.head...)
				c.head = nil
				c.state = stPassthrough
			}
		}
	}
}

// line handles a complete line at the end of c.head.
func (c *guardConn) line() {
	switch c.state {
	case stHead:
		// The head ends with an empty line.
		if !bytes.HasSuffix(c.head, []byte("\n\n")) && !bytes.HasSuffix(c.head, []byte("\n\r\n")) {
			if len(bytes.TrimSpace(c.head)) == 0 {
				// Blank lines before a request line are allowed; pass them.
				c.out = append(c.out, c.head...)
				c.head = c.head[:0]
			}
			return
		}
		c.endHead()
	case stChunkSize:
		ln := bytes.TrimRight(c.head, "\r\n")
		if i := bytes.IndexByte(ln, ';'); i >= 0 {
			ln = ln[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(ln)), 16, 64)
		c.out = append(c.out, c.head...)
		c.head = c.head[:0]
		switch {
		case err != nil || size < 0:
			c.state = stPassthrough // the server will reject it
		case size == 0:
			c.state = stTrailers
		default:
			c.state, c.remain = stChunkData, size
		}
	case stTrailers:
		blank := len(bytes.TrimRight(c.head, "\r\n")) == 0
		c.out = append(c.out, c.head...)
		c.head = c.head[:0]
		if blank {
			c.state = stHead
		}
	}
}

// endHead inspects a complete request head and decides the body framing.
func (c *guardConn) endHead() {
	head := c.head
	c.head = nil
	var (
		contentLength = int64(-1)
		hasCL, hasTE  bool
		chunked       bool
		upgrade       bool
	)
	// Walk the header lines in place (no per-request slice of lines); the
	// first line is the request line.
	rest := head
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[i+1:]
	}
	for len(rest) > 0 {
		l := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		l = bytes.TrimRight(l, "\r")
		i := bytes.IndexByte(l, ':')
		if i <= 0 {
			continue
		}
		name := bytes.TrimSpace(l[:i])
		value := bytes.TrimSpace(l[i+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			hasCL = true
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
				contentLength = n
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			hasTE = true
			if te := bytes.ToLower(value); bytes.HasSuffix(bytes.TrimSpace(te), []byte("chunked")) {
				chunked = true
			}
		case bytes.EqualFold(name, []byte("Upgrade")):
			upgrade = true
		}
	}
	if hasCL && hasTE {
		// Insert the marker as the head's first header line.
		if j := bytes.IndexByte(head, '\n'); j >= 0 {
			marked := make([]byte, 0, len(head)+len(ConflictHeader)+6)
			marked = append(marked, head[:j+1]...)
			marked = append(marked, ConflictHeader+": 1\r\n"...)
			marked = append(marked, head[j+1:]...)
			head = marked
		}
	}
	c.out = append(c.out, head...)
	switch {
	case upgrade:
		c.state = stPassthrough
	case chunked:
		c.state = stChunkSize
	case hasTE:
		c.state = stPassthrough // an unknown coding: the server answers 501
	case contentLength > 0:
		c.state, c.remain = stBody, contentLength
	case hasCL && contentLength < 0:
		c.state = stPassthrough // a bad length: the server answers 400
	default:
		c.state = stHead
	}
}
