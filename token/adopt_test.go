package token_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// slowStore holds one Load, once armed: it reads the record, says so on
// read, and returns it only once release is closed, by which time the
// store may hold a newer one.
type slowStore struct {
	token.Store
	mu      sync.Mutex
	armed   bool
	read    chan struct{}
	release chan struct{}
}

func newSlowStore(s token.Store) *slowStore {
	return &slowStore{Store: s, read: make(chan struct{}), release: make(chan struct{})}
}

func (s *slowStore) arm() {
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
}

func (s *slowStore) Load(ctx context.Context, key string) (token.Record, int64, error) {
	s.mu.Lock()
	hold := s.armed
	s.armed = false
	s.mu.Unlock()
	rec, ver, err := s.Store.Load(ctx, key)
	if hold {
		close(s.read)
		<-s.release
	}
	return rec, ver, err
}

// expiries records what a manager's Expiry hook reported, in order.
type expiries struct {
	mu   sync.Mutex
	seen []time.Time
}

func (x *expiries) add(t time.Time) {
	x.mu.Lock()
	x.seen = append(x.seen, t)
	x.mu.Unlock()
}

func (x *expiries) list() []time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]time.Time(nil), x.seen...)
}

func (e *env) hookedManager(holder string, store token.Store, x *expiries) *token.Manager {
	return token.NewManager(token.Options{
		Holder: holder, Store: store, Endpoint: e.ep,
		Credentials: token.StaticCredentials{ID: clientID, Secret: clientSecret, Source: "env"},
		Logger:      slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         e.clk.Now,
		Hooks:       token.Hooks{Expiry: x.add},
	})
}

// A manager's first store read is slow; a login through it completes (and
// is stored) meanwhile. The read then returns the older grant: the manager
// keeps the login's.
func TestStartReadSlowerThanLogin(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.login(e.manager("a", e.store), login.NewLoginFlow(0, e.clk.Now)) // an older grant in the store
	old, _, _ := e.store.Load(context.Background(), "")
	e.clk.Advance(time.Minute)

	store := newSlowStore(e.store)
	store.arm()
	m := e.manager("b", store)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	go func() { m.Load(ctx); close(started); m.Run(ctx) }()
	<-store.read // the first read has the older grant in hand
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	g, err := m.Token(ctx)
	if err != nil || g.AccessToken == old.Grant.AccessToken {
		t.Fatalf("after the login: %v", err)
	}
	close(store.release)
	<-started
	now, err := m.Token(ctx)
	if err != nil || now.AccessToken != g.AccessToken {
		t.Fatalf("the slow first read put the older grant back (%v)", err)
	}
	if rec, _, _ := e.store.Load(ctx, ""); rec.Grant == nil || rec.Grant.AccessToken != g.AccessToken {
		t.Fatal("the store does not hold the login's grant")
	}
}

// A request re-reads the store (its grant has expired) and the read is
// slow; a refresh persists a new grant meanwhile. The read then returns the
// spent grant: the manager never takes it back, not even for a moment.
func TestReReadSlowerThanRefresh(t *testing.T) {
	e := newEnv(t, time.Hour)
	store := newSlowStore(e.store)
	var x expiries
	m := e.hookedManager("a", store, &x)
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	ctx := context.Background()
	g0, _ := m.Token(ctx)
	e.clk.Advance(61 * time.Minute) // g0 has expired

	store.arm()
	type result struct {
		g   *token.Grant
		err error
	}
	reread := make(chan result, 1)
	go func() {
		g, err := m.Token(ctx)
		reread <- result{g, err}
	}()
	<-store.read // the re-read has g0's record in hand
	g1, err := m.ForceRefresh(ctx, g0)
	if err != nil || g1.AccessToken == g0.AccessToken {
		t.Fatalf("refresh: %v", err)
	}
	close(store.release)
	r := <-reread
	if r.err != nil || r.g.AccessToken != g1.AccessToken {
		t.Fatalf("the request got %v, want the refreshed grant", r.err)
	}
	seen := x.list()
	for i := 1; i < len(seen); i++ {
		if seen[i].Before(seen[i-1]) {
			t.Fatalf("the held grant went back from one expiring %v to one expiring %v", seen[i-1], seen[i])
		}
	}
	if st := e.fake.Stats(); st.Refreshes != 1 || st.RefreshReuse != 0 {
		t.Fatalf("refreshes %d, reuse %d: want one refresh, no reuse", st.Refreshes, st.RefreshReuse)
	}
}

// A store read that began after the held state was taken is not older news:
// after the record was deleted (versions start again from 0), a new login
// stored at a lower version than the one held still reaches the manager.
func TestStoreResetReachesManager(t *testing.T) {
	e := newEnv(t, time.Hour)
	a := e.manager("a", e.store)
	e.login(a, login.NewLoginFlow(0, e.clk.Now))
	ctx := context.Background()
	g0, _ := a.Token(ctx)
	e.clk.Advance(58 * time.Minute)
	if _, err := a.ForceRefresh(ctx, g0); err != nil { // version 3: login, lease, refresh
		t.Fatal(err)
	}
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(61 * time.Minute) // a's grant has expired: its next request re-reads the store
	b := e.manager("b", e.store)
	e.login(b, login.NewLoginFlow(0, e.clk.Now)) // version 1
	gb, _ := b.Token(ctx)
	if g, err := a.Token(ctx); err != nil || g.AccessToken != gb.AccessToken {
		t.Fatalf("after a login over the deleted record: %v; want its grant", err)
	}
}
