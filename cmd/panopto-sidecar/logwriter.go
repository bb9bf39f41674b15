package main

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// logWriter batches log lines: a busy proxy writes one line per request,
// and a write system call per line costs more than the line is worth. Lines
// are flushed every flushEvery, when the buffer passes flushAt, or by Close.
// Each Write holds a whole line (slog writes one line per call), so lines
// never interleave.
type logWriter struct {
	mu     sync.Mutex
	w      io.Writer
	buf    bytes.Buffer
	done   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

const (
	flushEvery = 50 * time.Millisecond
	flushAt    = 64 << 10
)

func newLogWriter(w io.Writer) *logWriter {
	lw := &logWriter{w: w, done: make(chan struct{})}
	lw.wg.Add(1)
	go lw.loop()
	return lw
}

func (lw *logWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.closed {
		return lw.w.Write(p)
	}
	lw.buf.Write(p)
	if lw.buf.Len() >= flushAt {
		lw.flushLocked()
	}
	return len(p), nil
}

func (lw *logWriter) flushLocked() {
	if lw.buf.Len() == 0 {
		return
	}
	_, _ = lw.w.Write(lw.buf.Bytes())
	lw.buf.Reset()
}

func (lw *logWriter) loop() {
	defer lw.wg.Done()
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-lw.done:
			return
		case <-t.C:
			lw.mu.Lock()
			lw.flushLocked()
			lw.mu.Unlock()
		}
	}
}

// Close flushes what is buffered; later writes go straight through.
func (lw *logWriter) Close() {
	lw.mu.Lock()
	if lw.closed {
		lw.mu.Unlock()
		return
	}
	lw.closed = true
	lw.flushLocked()
	lw.mu.Unlock()
	close(lw.done)
	lw.wg.Wait()
}
