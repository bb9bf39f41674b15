package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// What is read of a refused request's body after the answer: nginx's
// lingering close, bounded in time and bytes.
const (
	lingerTimeout  = 30 * time.Second
	lingerMaxBytes = 1 << 30
	// A refusal's body up to this size is held until the handler returns,
	// so it goes out with a Content-Length: complete before the lingering.
	lingerHoldBytes = 64 << 10
)

// Linger wraps a listener's handler so that a refusal reaches every
// client, also one that writes its whole body before it reads the answer
// (Ruby's Net::HTTP, Python's http.client). When the handler answers 4xx
// or 5xx on HTTP/1 without having read the request body to its end, the
// answer is written out whole (with a Content-Length), and then the rest of
// the body is read and discarded, for at most 30 s and 1 GiB, before the
// connection is closed. Without that, net/http reads at most 256 KiB of it
// and closes a connection the client is still writing to: the client gets
// ECONNRESET instead of the answer.
//
// A request with Expect: 100-continue that is refused before its body was
// read gets the answer without a 100 Continue (writing a final status
// turns the automatic 100 off), so a client that waits for the 100 never
// sends the body; one that stopped waiting and sent it anyway is read to
// the end all the same.
func Linger(next http.Handler) http.Handler {
	return lingering{next: next, timeout: lingerTimeout, max: lingerMaxBytes}
}

type lingering struct {
	next    http.Handler
	timeout time.Duration
	max     int64
}

func (l lingering) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		l.next.ServeHTTP(w, r)
		return
	}
	body := &watchedBody{ReadCloser: r.Body}
	lw := &lingerWriter{ResponseWriter: w, body: body}
	// net/http keeps its own reference to the request: the handler sees a
	// copy whose body tells whether it was read to the end.
	r2 := *r
	r2.Body = body
	l.next.ServeHTTP(lw, &r2)

	if !lw.held {
		if lw.status < 400 || body.ended.Load() {
			return
		}
	}
	lw.release(true)
	if body.ended.Load() {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(l.timeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, l.max))
	_ = rc.SetReadDeadline(time.Time{})
}

// watchedBody records that the request body was read to its end (or
// failed, or was closed): nothing is left to linger for.
type watchedBody struct {
	io.ReadCloser
	ended atomic.Bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.ended.Store(true)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.ended.Store(true)
	return b.ReadCloser.Close()
}

// lingerWriter holds a refusal (4xx, 5xx) answered while the body is not
// read to its end, up to lingerHoldBytes, so that it can go out with a
// Content-Length before the lingering read; anything else passes through.
type lingerWriter struct {
	http.ResponseWriter
	body   *watchedBody
	status int
	held   bool
	buf    bytes.Buffer
}

func (w *lingerWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		if code >= 400 && !w.body.ended.Load() {
			w.held = true
			return
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *lingerWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		if w.buf.Len()+len(p) <= lingerHoldBytes {
			return w.buf.Write(p)
		}
		w.release(false)
	}
	return w.ResponseWriter.Write(p)
}

// release writes out a held answer: with its Content-Length when the
// handler is done (all of it is held), as the handler set it when it is
// still writing.
func (w *lingerWriter) release(done bool) {
	if !w.held {
		return
	}
	w.held = false
	if done {
		w.ResponseWriter.Header().Set("Content-Length", strconv.Itoa(w.buf.Len()))
	}
	w.ResponseWriter.WriteHeader(w.status)
	_, _ = w.ResponseWriter.Write(w.buf.Bytes())
	w.buf = bytes.Buffer{}
}

// Flush passes through, except while an answer is held.
func (w *lingerWriter) Flush() {
	if w.held {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *lingerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
