package token

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// stallStore holds every Load of the keys in stall until release is closed
// (or the read's ctx ends), and counts Loads per key.
type stallStore struct {
	Store
	stall   map[string]bool
	started chan string // one send per held Load, when it begins
	release chan struct{}
	mu      sync.Mutex
	loads   map[string]int
}

func newStallStore(t *testing.T, keys ...string) *stallStore {
	s := &stallStore{
		Store: NewFileStore(filepath.Join(t.TempDir(), "token.json")),
		stall: map[string]bool{}, started: make(chan string, 100), release: make(chan struct{}),
		loads: map[string]int{},
	}
	for _, k := range keys {
		s.stall[k] = true
	}
	return s
}

func (s *stallStore) Load(ctx context.Context, key string) (Record, int64, error) {
	s.mu.Lock()
	s.loads[key]++
	s.mu.Unlock()
	if s.stall[key] {
		select {
		case s.started <- key:
		default: // nobody is counting any more
		}
		select {
		case <-s.release:
		case <-ctx.Done():
			return Record{}, 0, ctx.Err()
		}
	}
	return s.Store.Load(ctx, key)
}

func (s *stallStore) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads[key]
}

// lookup asks for account's manager on its own goroutine.
func lookup(ctx context.Context, p *Pool, account string) <-chan lookupResult {
	ch := make(chan lookupResult, 1)
	go func() {
		m, err := p.Manager(ctx, account)
		ch <- lookupResult{m, err}
	}()
	return ch
}

type lookupResult struct {
	m   *Manager
	err error
}

// watchdog fails the test if ch gives nothing in a long while: only a
// lookup stuck behind another account's store read takes that long.
func watchdog(t *testing.T, ch <-chan lookupResult, what string) lookupResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never answered", what)
		return lookupResult{}
	}
}

// One account's store read stalls. Another account is looked up (its grant
// read from the store) and answers while the stalled read is still held;
// the stalled account's lookups share one read, and one that gives up
// returns at once.
func TestPoolStalledStoreDelaysOnlyItsAccount(t *testing.T) {
	store := newStallStore(t, "alice")
	p := newTestPool(t, testClock(), PoolOptions{Store: store, Mode: AccountsLogin})
	ctx := context.Background()

	alice := lookup(ctx, p, "alice")
	if k := <-store.started; k != "alice" {
		t.Fatalf("held read of %q", k)
	}
	bob := watchdog(t, lookup(ctx, p, "bob"), "bob's lookup, while alice's store read is stalled,")
	if bob.err != nil || bob.m == nil || store.count("bob") != 1 {
		t.Fatalf("bob: %v, %d store reads", bob.err, store.count("bob"))
	}
	select {
	case <-alice:
		t.Fatal("alice answered before her store read ended")
	default:
	}
	if st := p.Status(); st.Cached != 2 {
		t.Fatalf("status while loading: %+v", st)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Manager(gone, "alice"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a lookup that gave up: %v, want its own context's error", err)
	}
	again := lookup(ctx, p, "alice")

	close(store.release)
	a1, a2 := watchdog(t, alice, "alice"), watchdog(t, again, "alice again")
	if a1.err != nil || a2.err != nil || a1.m != a2.m {
		t.Fatalf("alice: %v, %v, same manager %v", a1.err, a2.err, a1.m == a2.m)
	}
	if n := store.count("alice"); n != 1 {
		t.Fatalf("alice's grant read %d times, want once for all her lookups", n)
	}
}

// An account evicted (LRU or idle) while its grant is still loading: the
// load ends, its waiters answer, and the next lookup starts afresh.
func TestPoolEvictsLoadingAccount(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   PoolSettings
		evict func(p *Pool, clk interface{ Advance(time.Duration) })
	}{
		{"lru", PoolSettings{MaxCached: 1}, func(p *Pool, _ interface{ Advance(time.Duration) }) {
			if _, err := p.Manager(context.Background(), "bob"); err != nil {
				panic(err)
			}
		}},
		{"idle", PoolSettings{IdleEvict: time.Hour}, func(p *Pool, clk interface{ Advance(time.Duration) }) {
			clk.Advance(2 * time.Hour)
			p.evictIdle()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testClock()
			store := newStallStore(t, "alice")
			p := newTestPool(t, clk, PoolOptions{Store: store, Mode: AccountsLogin, PoolSettings: tc.set})
			ctx := context.Background()
			alice := lookup(ctx, p, "alice")
			<-store.started
			tc.evict(p, clk)
			r := watchdog(t, alice, "alice, evicted while loading,")
			if r.err != nil || r.m == nil {
				t.Fatalf("alice: %v", r.err)
			}
			if st := p.Status(); st.Evicted != 1 {
				t.Fatalf("status %+v, want alice evicted", st)
			}
			close(store.release)
			m, err := p.Manager(ctx, "alice")
			if err != nil || m == r.m {
				t.Fatalf("alice after eviction: %v, same manager %v", err, m == r.m)
			}
			if n := store.count("alice"); n != 2 {
				t.Fatalf("alice's grant read %d times, want twice", n)
			}
		})
	}
}

// 100 goroutines look up a few accounts at once, with and without room for
// all of them: no lookup fails, the pool stays within bounds, and while no
// account is evicted each has one manager and one store read.
func TestPoolConcurrentLookups(t *testing.T) {
	accounts := []string{"alice", "bob", "carol", "dave"}
	for _, tc := range []struct {
		name      string
		maxCached int
	}{
		{"room for all", 10},
		{"evicting", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStallStore(t, accounts...)
			p := newTestPool(t, testClock(), PoolOptions{Store: store, Mode: AccountsLogin,
				PoolSettings: PoolSettings{MaxCached: tc.maxCached}})
			var wg sync.WaitGroup
			results := make([]lookupResult, 100)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 3 {
						m, err := p.Manager(context.Background(), accounts[i%len(accounts)])
						results[i] = lookupResult{m, err}
						if err != nil {
							return
						}
					}
				}()
			}
			<-store.started // at least one read is held while lookups pile up
			close(store.release)
			wg.Wait()
			byAccount := map[string]*Manager{}
			for i, r := range results {
				name := accounts[i%len(accounts)]
				if r.err != nil || r.m == nil || r.m.key != name {
					t.Fatalf("lookup %d of %s: %v", i, name, r.err)
				}
				if tc.maxCached >= len(accounts) {
					if m, ok := byAccount[name]; ok && m != r.m {
						t.Fatalf("%s has two managers", name)
					}
					byAccount[name] = r.m
				}
			}
			st := p.Status()
			if st.Cached > tc.maxCached {
				t.Fatalf("status %+v, want at most %d cached", st, tc.maxCached)
			}
			if tc.maxCached >= len(accounts) {
				for _, a := range accounts {
					if n := store.count(a); n != 1 {
						t.Errorf("%s's grant read %d times, want once", a, n)
					}
				}
				if st.Evicted != 0 {
					t.Errorf("status %+v, want no evictions", st)
				}
			}
		})
	}
}
