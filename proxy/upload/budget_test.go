package upload

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const kib = 1 << 10

// watched is a Budget whose every state the test sees: the highest bytes
// taken (held and idle) and how often idle buffers were let go.
type watched struct {
	*Budget
	mu       sync.Mutex
	peak     int64
	released int
}

func newWatched(limit int64) *watched {
	w := &watched{}
	w.Budget = NewBudget(BudgetOptions{
		Limit: limit,
		Observe: func(s BudgetStats) {
			w.mu.Lock()
			w.peak = max(w.peak, s.InUse+s.Idle)
			w.mu.Unlock()
		},
		Released: func() { w.mu.Lock(); w.released++; w.mu.Unlock() },
	})
	return w
}

func (w *watched) peakBytes() int64 { w.mu.Lock(); defer w.mu.Unlock(); return w.peak }

// TestBudgetFirstComeFirstServed: with room for two buffers, five uploads
// ask in turn; the three that wait are admitted in the order they came,
// each as soon as an upload before it ends, and the admitted ones get no
// extra buffer while anyone waits.
func TestBudgetFirstComeFirstServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWatched(2 * 64 * kib)
		ctx := context.Background()
		a, _ := b.Admit(ctx, 64*kib, time.Hour)
		sa := b.newShare(64*kib, 3)
		bb, _ := b.Admit(ctx, 64*kib, time.Hour)
		sb := b.newShare(64*kib, 3)

		admitted := make(chan string, 3)
		for _, name := range []string{"c", "d", "e"} {
			go func() {
				if _, err := b.Admit(ctx, 64*kib, time.Hour); err != nil {
					t.Errorf("%s: %v", name, err)
				}
				admitted <- name
			}()
			synctest.Wait() // name is in the queue before the next one asks
		}
		if st := b.Stats(); st.Waiting != 3 || st.Buffers != 2 {
			t.Fatalf("stats %+v, want 3 waiting, 2 buffers held", st)
		}
		if _, ok := b.tryTake(64 * kib); ok {
			t.Fatal("an extra buffer was handed out while uploads wait for their first")
		}

		sa.put(a)
		sa.close()
		synctest.Wait()
		sb.put(bb)
		sb.close()
		synctest.Wait()
		if got := []string{<-admitted, <-admitted}; got[0] != "c" || got[1] != "d" {
			t.Fatalf("admitted %v, want [c d]", got)
		}
		if st := b.Stats(); st.Waiting != 1 {
			t.Fatalf("stats %+v, want e waiting", st)
		}
		b.give(nil, 64*kib) // c ends
		if got := <-admitted; got != "e" {
			t.Fatalf("admitted %s, want e", got)
		}
		if b.peakBytes() > 2*64*kib {
			t.Fatalf("peak %d bytes, over the limit", b.peakBytes())
		}
	})
}

// TestBudgetExtrasGoBackToWaiters: an upload holding three buffers hands
// the ones it finishes with to an upload waiting for its first, down to
// the one it keeps; it still progresses with that one.
func TestBudgetExtrasGoBackToWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWatched(3 * 64 * kib)
		ctx := context.Background()
		first, _ := b.Admit(ctx, 64*kib, time.Hour)
		s := b.newShare(64*kib, 3)
		x1, _ := s.get(ctx)
		x2, _ := s.get(ctx)
		if st := b.Stats(); st.Buffers != 3 || s.held.Load() != 3 {
			t.Fatalf("stats %+v, held %d: want all three buffers taken by one upload", st, s.held.Load())
		}

		got := make(chan []byte, 2)
		for range 2 {
			go func() {
				buf, err := b.Admit(ctx, 64*kib, time.Hour)
				if err != nil {
					t.Error(err)
				}
				got <- buf
			}()
			synctest.Wait()
		}
		s.put(x1)
		s.put(x2)
		synctest.Wait()
		if len(got) != 2 || s.held.Load() != 1 {
			t.Fatalf("%d waiters admitted, the upload holds %d; want 2 and 1", len(got), s.held.Load())
		}
		// With one buffer left it fills, sends and refills it in turn.
		go s.put(first)
		for range 3 {
			buf, err := s.get(ctx)
			if err != nil || len(buf) != 64*kib {
				t.Fatalf("get: %d bytes, %v", len(buf), err)
			}
			go s.put(buf) // the part went out
		}
		synctest.Wait()
		s.close()
		if st := b.Stats(); st.Buffers != 2 || st.InUse+st.Idle > 3*64*kib {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestBudgetNoStarvation: 40 uploads of 10 parts each share a budget of
// three buffers; each sends a part in a second of (fake) time. Every one
// finishes, the budget is never exceeded, and every buffer comes back.
func TestBudgetNoStarvation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const size = 64 * kib
		b := newWatched(3 * size)
		ctx := context.Background()
		var wg sync.WaitGroup
		done := make(chan int, 40)
		for i := range 40 {
			wg.Go(func() {
				first, err := b.Admit(ctx, size, time.Hour)
				if err != nil {
					t.Errorf("upload %d: %v", i, err)
					return
				}
				s := b.newShare(size, 3)
				var parts sync.WaitGroup
				buf := first
				for p := range 10 {
					if p > 0 {
						if buf, err = s.get(ctx); err != nil {
							t.Errorf("upload %d part %d: %v", i, p, err)
							return
						}
					}
					part := buf
					parts.Go(func() { time.Sleep(time.Second); s.put(part) })
				}
				parts.Wait()
				s.close()
				done <- i
			})
		}
		wg.Wait()
		if len(done) != 40 {
			t.Fatalf("%d of 40 uploads finished", len(done))
		}
		if p := b.peakBytes(); p > 3*size {
			t.Fatalf("peak %d bytes, limit %d", p, 3*size)
		}
		if st := b.Stats(); st.Buffers != 0 || st.InUse != 0 || st.Waiting != 0 || st.Idle != 3*size {
			t.Fatalf("stats at the end %+v", st)
		}
	})
}

// TestBudgetQueueTimeout: an upload that cannot get its first buffer gives
// up after the queue timeout, and not before; one whose client goes away
// leaves the queue at once. Neither holds anything afterwards.
func TestBudgetQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWatched(64 * kib)
		held, _ := b.Admit(context.Background(), 64*kib, time.Hour)
		start := time.Now()
		_, err := b.Admit(context.Background(), 64*kib, 15*time.Minute)
		if !errors.Is(err, ErrBusy) || time.Since(start) != 15*time.Minute {
			t.Fatalf("after %v: %v, want ErrBusy after 15m", time.Since(start), err)
		}

		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := b.Admit(ctx, 64*kib, 15*time.Minute); errc <- err }()
		synctest.Wait()
		if st := b.Stats(); st.Waiting != 1 {
			t.Fatalf("stats %+v, want one waiting", st)
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: %v", err)
		}
		if st := b.Stats(); st.Waiting != 0 || st.Buffers != 1 {
			t.Fatalf("stats %+v, want nobody waiting and one buffer held", st)
		}
		b.give(held, 64*kib)
		if st := b.Stats(); st.Buffers != 0 || st.Idle != 64*kib {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestBudgetIdleRelease: buffers no upload uses are kept for the next one
// for a minute, then let go; a buffer reused meanwhile starts its minute
// again.
func TestBudgetIdleRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWatched(4 * 64 * kib)
		ctx := context.Background()
		x, _ := b.Admit(ctx, 64*kib, time.Hour)
		y, _ := b.Admit(ctx, 64*kib, time.Hour)
		b.give(x, 64*kib)
		time.Sleep(30 * time.Second)
		b.give(y, 64*kib)
		if st := b.Stats(); st.Idle != 2*64*kib {
			t.Fatalf("stats %+v, want both kept", st)
		}
		time.Sleep(31 * time.Second) // x has been idle a minute
		synctest.Wait()
		if st := b.Stats(); st.Idle != 64*kib || b.released != 1 {
			t.Fatalf("stats %+v, released %d: want y kept, x let go", st, b.released)
		}
		again, _ := b.Admit(ctx, 64*kib, time.Hour) // reuses y
		if st := b.Stats(); st.Idle != 0 || b.allocs.Load() != 2 {
			t.Fatalf("stats %+v, %d made: want y reused", st, b.allocs.Load())
		}
		time.Sleep(10 * time.Minute)
		b.give(again, 64*kib)
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if st := b.Stats(); st.Idle != 64*kib {
			t.Fatalf("stats %+v: let go before its minute", st)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := b.Stats(); st.Idle != 0 || st.InUse != 0 || b.released != 2 {
			t.Fatalf("stats %+v, released %d: want nothing kept", st, b.released)
		}
	})
}

// TestBudgetSizesAndLimit: buffers of another part size (after a reload)
// make room for the new size; a lower limit lets idle buffers go, and a
// higher one admits those waiting.
func TestBudgetSizesAndLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWatched(2 * 64 * kib)
		ctx := context.Background()
		x, _ := b.Admit(ctx, 64*kib, time.Hour)
		y, _ := b.Admit(ctx, 64*kib, time.Hour)
		b.give(x, 64*kib)
		b.give(y, 64*kib)
		z, err := b.Admit(ctx, 100*kib, time.Minute)
		if err != nil || len(z) != 100*kib {
			t.Fatalf("%d bytes, %v", len(z), err)
		}
		if st := b.Stats(); st.InUse != 100*kib || st.Idle != 0 {
			t.Fatalf("stats %+v, want both small buffers let go", st)
		}
		errc := make(chan error, 1)
		go func() { _, err := b.Admit(ctx, 100*kib, time.Hour); errc <- err }()
		synctest.Wait()
		b.SetLimit(200 * kib)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if b.peakBytes() > 200*kib {
			t.Fatalf("peak %d", b.peakBytes())
		}
	})
}
