package upload

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Budget defaults.
const (
	DefaultMemoryLimit  = 256 << 20
	DefaultQueueTimeout = 15 * time.Minute
	// DefaultIdleRelease is how long a part buffer no upload uses is kept
	// for the next one before it is let go.
	DefaultIdleRelease = time.Minute
)

// ErrBusy is a wait for a first part buffer that outlasted the queue timeout.
var ErrBusy = errors.New("no part buffer free within the queue timeout")

// BudgetOptions configure a Budget.
type BudgetOptions struct {
	Limit       int64         // bytes of part buffers, in use or idle; default DefaultMemoryLimit
	IdleRelease time.Duration // idle buffers are let go after this; default DefaultIdleRelease
	// Released is called (outside the lock) after idle buffers were let go,
	// e.g. to hand the memory back to the system at once; may be nil.
	Released func()
	// Observe sees the budget after every change (under its lock: keep it
	// quick, and do not call the Budget from it); may be nil.
	Observe func(BudgetStats)
}

// BudgetStats is the state of a Budget.
type BudgetStats struct {
	Limit   int64 // bytes
	Buffers int   // part buffers held by uploads
	InUse   int64 // bytes of the buffers held by uploads
	Idle    int64 // bytes of the buffers kept for the next upload
	Waiting int   // uploads waiting for their first buffer
}

// Budget is the one memory budget every upload takes its part buffers
// from: at most Limit bytes of buffers exist at once, held by uploads or
// kept idle for the next one. An upload is admitted with one buffer, first
// come first served (Admit), which it keeps until it ends, so it always
// progresses; it takes more, up to its concurrency, only while no upload
// waits for its first, and hands them back as soon as one does. It is safe
// for concurrent use.
type Budget struct {
	idleAfter time.Duration
	released  func()
	observe   func(BudgetStats)
	waiting   atomic.Int32 // len(queue), read without the lock
	allocs    atomic.Int64 // buffers made (tests)

	mu        sync.Mutex
	limit     int64
	inUse     int64
	buffers   int
	idle      []idleBuf // oldest first
	idleBytes int64
	queue     []*waiter // first come first served
	sweep     *time.Timer
}

type idleBuf struct {
	buf   []byte
	since time.Time
}

// waiter is an upload waiting for its first buffer. It receives the buffer,
// or nil when the bytes were reserved for a buffer it makes itself.
type waiter struct {
	size int64
	ch   chan []byte
}

// NewBudget returns a Budget with defaults filled in.
func NewBudget(o BudgetOptions) *Budget {
	if o.Limit <= 0 {
		o.Limit = DefaultMemoryLimit
	}
	if o.IdleRelease <= 0 {
		o.IdleRelease = DefaultIdleRelease
	}
	b := &Budget{idleAfter: o.IdleRelease, released: o.Released, observe: o.Observe, limit: o.Limit}
	b.mu.Lock()
	b.observeLocked()
	b.mu.Unlock()
	return b
}

// SetLimit changes the limit. Buffers held stay held; idle ones beyond the
// new limit are let go, and waiting uploads are admitted if it grew.
func (b *Budget) SetLimit(limit int64) {
	if limit <= 0 {
		limit = DefaultMemoryLimit
	}
	b.mu.Lock()
	if b.limit == limit {
		b.mu.Unlock()
		return
	}
	b.limit = limit
	dropped := false
	for b.inUse+b.idleBytes > b.limit && len(b.idle) > 0 {
		b.dropOldestLocked()
		dropped = true
	}
	b.grantLocked()
	b.observeLocked()
	b.mu.Unlock()
	if dropped && b.released != nil {
		b.released()
	}
}

// Stats returns the budget's state.
func (b *Budget) Stats() BudgetStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statsLocked()
}

func (b *Budget) statsLocked() BudgetStats {
	return BudgetStats{Limit: b.limit, Buffers: b.buffers, InUse: b.inUse, Idle: b.idleBytes, Waiting: len(b.queue)}
}

func (b *Budget) observeLocked() {
	b.waiting.Store(int32(len(b.queue)))
	if b.observe != nil {
		b.observe(b.statsLocked())
	}
}

// Admit waits, first come first served, for an upload's first buffer of
// size bytes: until one is free, ctx ends, or wait (> 0) passes (ErrBusy).
func (b *Budget) Admit(ctx context.Context, size int64, wait time.Duration) ([]byte, error) {
	b.mu.Lock()
	if len(b.queue) == 0 {
		if buf, ok := b.takeLocked(size); ok {
			b.observeLocked()
			b.mu.Unlock()
			return b.made(buf, size), nil
		}
	}
	w := &waiter{size: size, ch: make(chan []byte, 1)}
	b.queue = append(b.queue, w)
	b.observeLocked()
	b.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case buf := <-w.ch:
		return b.made(buf, size), nil
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-timer.C:
		err = ErrBusy
	}
	b.mu.Lock()
	for i, q := range b.queue {
		if q == w {
			b.queue = slices.Delete(b.queue, i, i+1)
			b.grantLocked() // the next in line may fit where this one did not
			b.observeLocked()
			b.mu.Unlock()
			return nil, err
		}
	}
	b.mu.Unlock()
	// Granted just as the wait ended.
	buf := <-w.ch
	if ctx.Err() == nil {
		return b.made(buf, size), nil
	}
	b.give(buf, size)
	return nil, err
}

// tryTake returns a buffer of size bytes if one is free and no upload waits
// for its first: the extra buffers of an upload already admitted.
func (b *Budget) tryTake(size int64) ([]byte, bool) {
	if b.waiting.Load() > 0 {
		return nil, false
	}
	b.mu.Lock()
	if len(b.queue) > 0 {
		b.mu.Unlock()
		return nil, false
	}
	buf, ok := b.takeLocked(size)
	if ok {
		b.observeLocked()
	}
	b.mu.Unlock()
	if !ok {
		return nil, false
	}
	return b.made(buf, size), true
}

// hasWaiters reports whether an upload waits for its first buffer.
func (b *Budget) hasWaiters() bool { return b.waiting.Load() > 0 }

// give hands back a buffer of size bytes (buf nil: one that was lost).
func (b *Budget) give(buf []byte, size int64) {
	b.mu.Lock()
	b.inUse -= size
	b.buffers--
	if buf != nil && int64(cap(buf)) == size {
		b.idle = append(b.idle, idleBuf{buf[:size], time.Now()})
		b.idleBytes += size
	}
	b.grantLocked()
	b.armLocked()
	b.observeLocked()
	b.mu.Unlock()
}

// takeLocked takes size bytes for a buffer: an idle one of that size (the
// most recently used), or room for a new one (nil), letting idle buffers of
// another size go to make room. It reports false when there is no room.
func (b *Budget) takeLocked(size int64) ([]byte, bool) {
	for i := len(b.idle) - 1; i >= 0; i-- {
		if int64(len(b.idle[i].buf)) == size {
			buf := b.idle[i].buf
			b.idle = slices.Delete(b.idle, i, i+1) // clears the tail: no stale reference
			b.idleBytes -= size
			b.inUse += size
			b.buffers++
			return buf, true
		}
	}
	for b.inUse+b.idleBytes+size > b.limit && len(b.idle) > 0 {
		b.dropOldestLocked()
	}
	if b.inUse+b.idleBytes+size > b.limit {
		return nil, false
	}
	b.inUse += size
	b.buffers++
	return nil, true
}

func (b *Budget) dropOldestLocked() {
	b.idleBytes -= int64(len(b.idle[0].buf))
	b.idle[0] = idleBuf{}
	b.idle = b.idle[1:]
}

// grantLocked admits waiting uploads in order while their buffers fit.
func (b *Budget) grantLocked() {
	for len(b.queue) > 0 {
		w := b.queue[0]
		buf, ok := b.takeLocked(w.size)
		if !ok {
			return
		}
		b.queue[0] = nil
		b.queue = b.queue[1:]
		w.ch <- buf
	}
}

// made returns buf, or a new buffer of size bytes where the bytes were
// only reserved.
func (b *Budget) made(buf []byte, size int64) []byte {
	if buf != nil {
		return buf
	}
	b.allocs.Add(1)
	return make([]byte, size)
}

// armLocked schedules letting go of the oldest idle buffer.
func (b *Budget) armLocked() {
	if b.sweep != nil || len(b.idle) == 0 {
		return
	}
	b.sweep = time.AfterFunc(time.Until(b.idle[0].since.Add(b.idleAfter)), b.sweepIdle)
}

// sweepIdle lets go of the buffers idle for IdleRelease.
func (b *Budget) sweepIdle() {
	b.mu.Lock()
	b.sweep = nil
	cut := time.Now().Add(-b.idleAfter)
	dropped := false
	for len(b.idle) > 0 && !b.idle[0].since.After(cut) {
		b.dropOldestLocked()
		dropped = true
	}
	b.armLocked()
	b.observeLocked()
	b.mu.Unlock()
	if dropped && b.released != nil {
		b.released()
	}
}

// share is one upload's part buffers: the one it was admitted with, and
// extras up to max while no upload waits for its first.
type share struct {
	b    *Budget
	size int64
	max  int
	held atomic.Int32 // buffers this upload holds, in use or in own
	own  chan []byte  // held buffers not in use
}

// newShare is the share of an upload admitted with one buffer of size
// bytes, which comes back through put.
func (b *Budget) newShare(size int64, maxBuffers int) *share {
	s := &share{b: b, size: size, max: maxBuffers, own: make(chan []byte, maxBuffers)}
	s.held.Store(1)
	return s
}

// get returns a buffer to fill: one of the upload's own, an extra from the
// budget, or (holding max, or while others wait) the next of its own that
// a finished part hands back.
func (s *share) get(ctx context.Context) ([]byte, error) {
	select {
	case buf := <-s.own:
		return buf, nil
	default:
	}
	if int(s.held.Load()) < s.max {
		if buf, ok := s.b.tryTake(s.size); ok {
			s.held.Add(1)
			return buf, nil
		}
	}
	select {
	case buf := <-s.own:
		return buf, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// put hands a buffer back: to the budget while another upload waits for
// its first and this one holds more than one, else to the upload.
func (s *share) put(buf []byte) {
	buf = buf[:cap(buf)]
	for s.b.hasWaiters() {
		h := s.held.Load()
		if h <= 1 {
			break
		}
		if s.held.CompareAndSwap(h, h-1) {
			s.b.give(buf, s.size)
			return
		}
	}
	s.own <- buf
}

// close hands every buffer back; no part may be in flight.
func (s *share) close() {
	for {
		select {
		case buf := <-s.own:
			s.held.Add(-1)
			s.b.give(buf, s.size)
			continue
		default:
		}
		break
	}
	for s.held.Load() > 0 { // lost on the way: the bytes come back
		s.held.Add(-1)
		s.b.give(nil, s.size)
	}
}
