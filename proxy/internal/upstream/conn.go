package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// maxResponseHeaderBytes bounds what an upstream may send before the body.
const maxResponseHeaderBytes = 1 << 20

// max1xx bounds the informational answers before the final one.
const max1xx = 5

var errTooManyHeaderBytes = fmt.Errorf("upstream response headers exceed %d bytes", maxResponseHeaderBytes)

// conn is one connection to the upstream, used by one request at a time.
type conn struct {
	t    *Transport
	pool *connPool
	nc   net.Conn // what requests are written to (TLS or TCP)
	raw  net.Conn // the TCP connection under it
	lr   countingReader
	br   *bufio.Reader
	bw   *bufio.Writer

	idleSince time.Time
	reused    bool

	// mu orders deadline changes: a cancelled request's deadline in the
	// past is never undone, and the body writer starts the wait for
	// headers only if they have not arrived yet.
	mu          sync.Mutex
	interrupted bool
	headersIn   bool
	closeOnce   sync.Once
}

// countingReader counts what the connection delivered and, while armed,
// refuses to deliver more than a limit (the response headers' budget).
type countingReader struct {
	r       io.Reader
	n       int64
	limit   int64 // 0: no limit
	limitAt int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.limit > 0 {
		left := c.limitAt + c.limit - c.n
		if left <= 0 {
			return 0, errTooManyHeaderBytes
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// staleConnError is a reused connection that ended before any byte of an
// answer arrived.
type staleConnError struct{ err error }

func (e staleConnError) Error() string {
	return "upstream closed a kept-alive connection: " + e.err.Error()
}
func (e staleConnError) Unwrap() error { return e.err }

var aLongTimeAgo = time.Unix(1, 0)

func (pc *conn) interrupt() {
	pc.mu.Lock()
	pc.interrupted = true
	_ = pc.nc.SetDeadline(aLongTimeAgo)
	pc.mu.Unlock()
}

// awaitHeaders starts the wait for the response headers, unless they are in.
func (pc *conn) awaitHeaders() {
	pc.mu.Lock()
	if !pc.interrupted && !pc.headersIn && pc.t.responseHeaders > 0 {
		_ = pc.nc.SetReadDeadline(time.Now().Add(pc.t.responseHeaders))
	}
	pc.mu.Unlock()
}

func (pc *conn) gotHeaders() {
	pc.mu.Lock()
	pc.headersIn = true
	if !pc.interrupted {
		_ = pc.nc.SetReadDeadline(time.Time{})
	}
	pc.mu.Unlock()
}

func (pc *conn) close() {
	pc.closeOnce.Do(func() { pc.nc.Close() })
}

func (pc *conn) write(req *http.Request) error {
	if err := req.Write(pc.bw); err != nil {
		return err
	}
	return pc.bw.Flush()
}

func (pc *conn) roundTrip(req *http.Request, hasBody bool) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		pc.pool.put(pc, pc.t)
		closeRequestBody(req)
		return nil, err
	}
	pc.headersIn = false
	stop := context.AfterFunc(ctx, pc.interrupt)
	start := pc.lr.n
	var wrote chan error
	if hasBody {
		// The answer may come before the body is all sent; the wait for it
		// starts once the body is written.
		wrote = make(chan error, 1)
		go func() {
			err := pc.write(req)
			if err != nil {
				pc.close() // unblock the reader: there will be no answer
			} else {
				pc.awaitHeaders()
			}
			wrote <- err
		}()
	} else {
		if err := pc.write(req); err != nil {
			stop()
			pc.close()
			return nil, pc.failure(ctx, err, pc.lr.n == start)
		}
		pc.awaitHeaders()
	}
	resp, err := pc.readResponse(req)
	if err != nil {
		stop()
		pc.close()
		if wrote != nil {
			select {
			case werr := <-wrote:
				if werr != nil && ctx.Err() == nil {
					err = werr // the body failed first: that is the cause
				}
			default:
			}
		}
		return nil, pc.failure(ctx, err, pc.lr.n == start)
	}
	pc.gotHeaders()
	b := &body{pc: pc, ctx: ctx, body: resp.Body, stop: stop, wrote: wrote,
		reusable: !resp.Close && !req.Close, empty: resp.Body == http.NoBody}
	resp.Body = b
	return resp, nil
}

// failure maps a connection error to what the caller should see: its own
// cancellation, a stale kept-alive connection, or the error itself.
func (pc *conn) failure(ctx context.Context, err error, nothingRead bool) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if pc.reused && nothingRead && !errors.Is(err, errTooManyHeaderBytes) && !isTimeout(err) {
		return staleConnError{err}
	}
	return err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func (pc *conn) readResponse(req *http.Request) (*http.Response, error) {
	for n1xx := 0; ; n1xx++ {
		pc.lr.limitAt, pc.lr.limit = pc.lr.n-int64(pc.br.Buffered()), maxResponseHeaderBytes
		resp, err := http.ReadResponse(pc.br, req)
		pc.lr.limit = 0
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return nil, errors.New("upstream switched protocols on a request that asked for no upgrade")
		}
		if code >= 200 {
			return resp, nil
		}
		// An informational answer (100 Continue, 103 Early Hints) before
		// the final one: passed on as net/http's Transport does.
		if n1xx >= max1xx {
			return nil, errors.New("upstream sent too many 1xx informational responses")
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}
