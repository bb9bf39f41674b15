package upstream

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// body hands its connection back to the pool once the answer was read to
// its end, the request was written whole and nobody cancelled; otherwise
// it closes the connection.
type body struct {
	pc       *conn
	ctx      context.Context
	body     io.ReadCloser
	stop     func() bool
	wrote    chan error
	reusable bool
	empty    bool
	sawEOF   bool // set by Read only
	done     atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.sawEOF {
			return 0, io.EOF
		}
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.sawEOF = true
		b.finish(true)
	} else if err != nil {
		b.finish(false)
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr // the request was cancelled: say so, not "i/o timeout"
		}
	}
	return n, err
}

func (b *body) Close() error {
	b.finish(b.empty)
	return nil
}

func (b *body) finish(atEOF bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	pc := b.pc
	stopped := b.stop()
	if !atEOF || !stopped || !b.reusable || pc.br.Buffered() > 0 || (b.wrote != nil && !bodySent(b.wrote)) {
		pc.close() // this also ends a body writer still at work
		return
	}
	pc.pool.put(pc, pc.t)
}

// bodySent reports whether the request body writer finished without error.
// With the answer complete it is usually about to report; an upstream that
// answered early may instead have stopped reading the body, and then the
// connection cannot be kept.
func bodySent(wrote chan error) bool {
	select {
	case err := <-wrote:
		return err == nil
	default:
	}
	timer := time.NewTimer(writerWait)
	defer timer.Stop()
	select {
	case err := <-wrote:
		return err == nil
	case <-timer.C:
		return false
	}
}

// writerWait is how long a complete answer waits for its request's body
// writer to report before the connection is given up rather than kept.
const writerWait = 50 * time.Millisecond
