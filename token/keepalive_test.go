package token

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"golang.org/x/oauth2"
)

// kaEnv is a Panopto stand-in whose refresh tokens die after 14 days, a
// file store, and a helper that stores a grant obtained at a given time.
type kaEnv struct {
	t     *testing.T
	clk   *testsupport.Clock
	fake  *panoptofake.Server
	srv   *httptest.Server
	store *FileStore
	ep    Endpoint
}

const kaIdle = 14 * 24 * time.Hour

func newKAEnv(t *testing.T) *kaEnv {
	clk := testClock()
	users := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		users[u] = "pw-" + u
	}
	fake := panoptofake.New(panoptofake.Options{ClientID: "cid", ClientSecret: "secret", Now: clk.Now, RefreshTTL: kaIdle, Users: users})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return &kaEnv{t: t, clk: clk, fake: fake, srv: srv, store: NewFileStore(filepath.Join(t.TempDir(), "token.json")),
		ep: Endpoint{TokenURL: srv.URL + "/Panopto/oauth2/connect/token", ClientAuth: "basic", RefreshBefore: 5 * time.Minute, Timeout: 5 * time.Second}}
}

func (e *kaEnv) pool(holder string) *Pool {
	p := NewPool(PoolOptions{
		Store: e.store, Holder: holder, Now: e.clk.Now, Mode: AccountsLogin,
		Timing:       Timing{LeasePoll: 5 * time.Millisecond}, // a replica waiting on the other's lease looks again soon
		Credentials:  StaticCredentials{ID: "cid", Secret: "secret"},
		PoolSettings: PoolSettings{Endpoint: e.ep, MaxCached: 10},
	})
	runPool(e.t, p)
	return p
}

// connect stores a grant for account obtained now (password grant at the
// stand-in, as a login would give) and returns it.
func (e *kaEnv) connect(account string) *Grant {
	e.t.Helper()
	cfg := oauth2.Config{ClientID: "cid", ClientSecret: "secret", Endpoint: oauth2.Endpoint{TokenURL: e.ep.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}}
	tok, err := cfg.PasswordCredentialsToken(e.t.Context(), account, "pw-"+account)
	if err != nil {
		e.t.Fatal(err)
	}
	g := &Grant{AccessToken: Secret(tok.AccessToken), RefreshToken: Secret(tok.RefreshToken), Expiry: tok.Expiry, ObtainedAt: e.clk.Now()}
	_, ver, _ := e.store.Load(e.t.Context(), account)
	if _, err := e.store.CompareAndSwap(e.t.Context(), account, ver, Record{Grant: g}); err != nil {
		e.t.Fatal(err)
	}
	return g
}

func (e *kaEnv) revoke(g *Grant) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/Panopto/oauth2/connect/revocation",
		strings.NewReader(url.Values{"token": {g.RefreshToken.Reveal()}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("cid", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("revoke: %v", err)
	}
	resp.Body.Close()
}

func (e *kaEnv) refreshCalls() int { return e.fake.Stats().TokenCalls["refresh_token"] }

// A sweep refreshes the grants not refreshed for keep-alive's After, paced
// evenly over its span, without holding them in the pool; a grant Panopto
// refuses is dropped, listed as disconnected and never tried again; and a
// grant kept alive still refreshes after Panopto's idle lifetime.
func TestKeepAliveSweep(t *testing.T) {
	e := newKAEnv(t)
	ctx := t.Context()
	p := e.pool("replica-a")
	var mu sync.Mutex
	counted := map[string]int{}
	k := NewKeepAlive(p, e.store, KeepAliveSettings{After: 7 * 24 * time.Hour, Rate: 2}, func(r string) {
		mu.Lock()
		counted[r]++
		mu.Unlock()
	}, nil)
	var waits []time.Duration
	k.wait = func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		e.clk.Advance(d)
		return nil
	}

	alice := e.connect("alice")
	e.connect("bob")
	dave := e.connect("dave")
	e.connect("erin")
	if _, err := p.Default().store.CompareAndSwap(ctx, "erin", 1, Record{Dropped: "logout"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CompareAndSwap(ctx, TicketMarkerKey("alice"), 0, Record{Ticket: &TicketMark{IssuedAt: time.Unix(0, 1), ID: "x"}}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(6 * 24 * time.Hour)
	carol := e.connect("carol") // one day old at the sweep: not due
	e.revoke(dave)
	e.clk.Advance(24 * time.Hour)

	res, err := k.sweep(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accounts != 5 || res.Due != 3 || res.Results[KeepAliveOK] != 2 || res.Results[KeepAliveRefused] != 1 {
		t.Fatalf("sweep = %+v; want 5 accounts, 3 due: 2 ok, 1 refused", res)
	}
	if !slices.Equal(waits, []time.Duration{20 * time.Minute, 20 * time.Minute}) {
		t.Errorf("waits = %v; want the hour spread over 3 refreshes", waits)
	}
	if counted[KeepAliveOK] != 2 || counted[KeepAliveRefused] != 1 {
		t.Errorf("counted %v", counted)
	}
	if st := p.Status(); st.Cached != 0 {
		t.Errorf("pool caches %d accounts; keep-alive must not fill it", st.Cached)
	}
	rec, _, _ := e.store.Load(ctx, "alice")
	if rec.Grant == nil || rec.Grant.RefreshToken == alice.RefreshToken || rec.Grant.ObtainedAt.Before(e.clk.Now().Add(-time.Hour)) {
		t.Errorf("alice not refreshed: %+v", rec.Grant)
	}
	if rec, _, _ := e.store.Load(ctx, "carol"); rec.Grant == nil || rec.Grant.RefreshToken != carol.RefreshToken {
		t.Error("carol was refreshed before her turn")
	}
	names, next, err := Disconnected(ctx, e.store, e.store, "", 10)
	if err != nil || !slices.Equal(names, []string{"dave"}) || next != "" {
		t.Errorf("Disconnected = %q, %q, %v; want [dave]", names, next, err)
	}

	// Later sweeps never present dave's refused grant again.
	calls := e.refreshCalls()
	for range 3 {
		e.clk.Advance(24 * time.Hour)
		if _, err := k.sweep(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Past the stand-in's 14-day idle lifetime alice still refreshes.
	for range 10 {
		e.clk.Advance(24 * time.Hour)
		if _, err := k.sweep(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if counted[KeepAliveRefused] != 1 || counted[KeepAliveError] != 0 {
		t.Errorf("counted %v; want dave refused once, no errors", counted)
	}
	m, err := p.Manager(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ForceRefresh(ctx, nil); err != nil {
		t.Errorf("alice's grant after %s: %v", e.clk.Now().Sub(testClock().Now()), err)
	}
	if e.refreshCalls() <= calls {
		t.Error("no refresh after the first sweep")
	}
	if s := e.fake.Stats(); s.RefreshReuse != 0 {
		t.Errorf("refresh token reuse: %d", s.RefreshReuse)
	}
}

// The pace is Rate at most, whatever the span.
func TestKeepAliveRate(t *testing.T) {
	e := newKAEnv(t)
	p := e.pool("replica-a")
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		e.connect(u)
	}
	e.clk.Advance(8 * 24 * time.Hour)
	k := NewKeepAlive(p, e.store, KeepAliveSettings{After: 7 * 24 * time.Hour, Rate: 4}, nil, nil)
	var waits []time.Duration
	k.wait = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	res, err := k.sweep(t.Context(), 0)
	if err != nil || res.Results[KeepAliveOK] != 4 {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	if !slices.Equal(waits, []time.Duration{250 * time.Millisecond, 250 * time.Millisecond, 250 * time.Millisecond}) {
		t.Errorf("waits = %v; want 1/Rate apart", waits)
	}
}

// Two replicas sweeping the same store at once refresh each grant once:
// the refresh lease and the re-read let one of them do it.
func TestKeepAliveReplicasRefreshOnce(t *testing.T) {
	e := newKAEnv(t)
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	for _, u := range users {
		e.connect(u)
	}
	e.clk.Advance(8 * 24 * time.Hour)
	before := e.fake.Stats().Refreshes
	var wg sync.WaitGroup
	results := make([]sweepResult, 2)
	for i, holder := range []string{"replica-a", "replica-b"} {
		k := NewKeepAlive(e.pool(holder), e.store, KeepAliveSettings{After: 7 * 24 * time.Hour, Rate: 1000}, nil, nil)
		k.wait = func(context.Context, time.Duration) error { return nil }
		wg.Go(func() {
			r, err := k.sweep(t.Context(), 0)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	s := e.fake.Stats()
	if got := s.Refreshes - before; got != len(users) || s.RefreshReuse != 0 {
		t.Errorf("%d refreshes, %d reuses; want %d, 0 (results %+v)", got, s.RefreshReuse, len(users), results)
	}
	if ok := results[0].Results[KeepAliveOK] + results[1].Results[KeepAliveOK]; ok != len(users) {
		t.Errorf("ok results = %d; want %d (%+v)", ok, len(users), results)
	}
}

// Each grant's turn is a fixed point between half of After and After, spread
// evenly over that window.
func TestKeepAliveDueSpread(t *testing.T) {
	after := 7 * 24 * time.Hour
	t0 := testClock().Now()
	for _, tc := range []struct {
		age      time.Duration
		min, max int // of 1000 grants obtained at t0
	}{
		{after/2 - time.Second, 0, 0},
		{after * 5 / 8, 200, 300},
		{after * 3 / 4, 450, 550},
		{after * 7 / 8, 700, 800},
		{after, 1000, 1000},
	} {
		n := 0
		for i := range 1000 {
			if keepAliveDue(fmt.Sprintf("student%04d", i), &Grant{ObtainedAt: t0}, t0.Add(tc.age), after) {
				n++
			}
		}
		if n < tc.min || n > tc.max {
			t.Errorf("at age %s: %d of 1000 due; want %d-%d", tc.age, n, tc.min, tc.max)
		}
	}
}

type countingLister struct {
	Lister
	mu    sync.Mutex
	calls int
}

func (c *countingLister) List(ctx context.Context, after string, limit int) ([]string, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Lister.List(ctx, after, limit)
}

func (c *countingLister) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// Run sweeps every After/8 while After is set, and not at all while it is
// 0; Update switches it either way without a restart.
func TestKeepAliveRunFollowsSettings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		store := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
		p := NewPool(PoolOptions{Store: store, Mode: AccountsLogin})
		l := &countingLister{Lister: store}
		k := NewKeepAlive(p, l, KeepAliveSettings{}, nil, nil)
		done := make(chan struct{})
		go func() { k.Run(ctx); close(done) }()

		time.Sleep(time.Hour)
		synctest.Wait()
		if n := l.count(); n != 0 {
			t.Fatalf("%d sweeps while off", n)
		}
		k.Update(KeepAliveSettings{After: 16 * time.Second, Rate: 2}) // a sweep every 2s ±10%
		synctest.Wait()
		if n := l.count(); n != 1 {
			t.Fatalf("%d sweeps right after turning on; want 1", n)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := l.count(); n < 5 || n > 7 {
			t.Fatalf("%d sweeps in 10s; want 6 ±1", n)
		}
		k.Update(KeepAliveSettings{})
		time.Sleep(3 * time.Second) // the wait under way ends first
		synctest.Wait()
		off := l.count()
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := l.count(); n != off {
			t.Fatalf("%d sweeps after turning off", n-off)
		}
		cancel()
		<-done
	})
}

// A transient failure (Panopto answering 500) is counted as an error,
// leaves the grant as it was, and is tried again by the next sweep only.
func TestKeepAliveTransientErrorRetriedNextSweep(t *testing.T) {
	e := newKAEnv(t)
	p := e.pool("replica-a")
	g := e.connect("alice")
	e.clk.Advance(8 * 24 * time.Hour)
	k := NewKeepAlive(p, e.store, KeepAliveSettings{After: 7 * 24 * time.Hour, Rate: 2}, nil, nil)
	k.wait = func(context.Context, time.Duration) error { return nil }
	e.fake.InjectTokenFaults(panoptofake.FaultStatus500)
	calls := e.refreshCalls()
	res, err := k.sweep(t.Context(), time.Hour)
	if err != nil || res.Results[KeepAliveError] != 1 {
		t.Fatalf("sweep = %+v, %v; want one error", res, err)
	}
	if n := e.refreshCalls() - calls; n != 1 {
		t.Errorf("%d token calls in the sweep; want 1, no retry within it", n)
	}
	if rec, _, _ := e.store.Load(t.Context(), "alice"); rec.Grant == nil || rec.Grant.RefreshToken != g.RefreshToken || rec.Lease != nil {
		t.Fatalf("after the error the store holds %+v, lease %+v; want the grant as it was, no lease", rec.Grant, rec.Lease)
	}
	res, err = k.sweep(t.Context(), time.Hour)
	if err != nil || res.Results[KeepAliveOK] != 1 {
		t.Fatalf("next sweep = %+v, %v; want alice refreshed", res, err)
	}
}
