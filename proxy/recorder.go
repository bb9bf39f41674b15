package proxy

import (
	"io"
	"net/http"
)

// recorder captures the status and byte count for the request log and keeps
// http.Flusher and friends reachable through Unwrap.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) {
	// A 1xx (100 Continue, 103 Early Hints) precedes the real answer; only
	// 101 Switching Protocols is final.
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	n, err := io.CopyBuffer(writerOnly{r.ResponseWriter}, src, buf)
	r.n += n
	return n, err
}

type writerOnly struct{ io.Writer }

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// bufferPool recycles the buffers ReverseProxy copies bodies with.
// A channel free list (unlike sync.Pool with a []byte) costs no allocation
// per Put.
type bufferPool struct{ free chan []byte }

func (b *bufferPool) Get() []byte {
	select {
	case buf := <-b.free:
		return buf
	default:
		return make([]byte, copyBufSize)
	}
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < copyBufSize {
		return
	}
	select {
	case b.free <- buf[:copyBufSize]:
	default: // enough spares; let it go
	}
}

// copyBufSize is the chunk bodies are copied in: large enough that a 2 GiB
// stream costs few system calls, small enough that hundreds of concurrent
// streams stay within a few tens of MiB.
const copyBufSize = 64 << 10

var copyBuffers = &bufferPool{free: make(chan []byte, 128)}
