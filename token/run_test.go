package token

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestPoolRunWaitsForEverything: once Run has returned, no goroutine the
// pool started is left: not the loop of the default grant, of a cached
// account or of an evicted one, and not a refresh a request left running
// in the background. Run waits for that refresh rather than abandoning it.
func TestPoolRunWaitsForEverything(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-gate
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "access-new", "refresh_token": "refresh-new", "token_type": "Bearer", "expires_in": 3600})
	}))
	defer srv.Close()
	release := sync.OnceFunc(func() { close(gate) })
	defer release() // before srv.Close, which waits for the handler
	clk := testClock()
	store := newMemStore()
	ctx := t.Context()
	now := clk.Now()
	for acct, expiry := range map[string]time.Time{"a": now.Add(time.Hour), "b": now.Add(time.Hour), "c": now.Add(time.Hour), "d": now.Add(-time.Minute)} {
		g := &Grant{AccessToken: Secret("access-" + acct), RefreshToken: Secret("refresh-" + acct), Expiry: expiry, ObtainedAt: expiry.Add(-time.Hour)}
		if _, err := store.CompareAndSwap(ctx, acct, 0, Record{Grant: g}); err != nil {
			t.Fatal(err)
		}
	}
	p := NewPool(PoolOptions{
		Store: store, Now: clk.Now, Mode: AccountsLogin,
		Credentials:  StaticCredentials{ID: "cid", Secret: "secret"},
		PoolSettings: PoolSettings{Endpoint: Endpoint{TokenURL: srv.URL, Timeout: 5 * time.Second}, MaxCached: 3},
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	p.Load(runCtx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		p.Run(runCtx)
	}()

	managers := []*Manager{p.Default()}
	for _, acct := range []string{"a", "b", "c", "d"} { // "d" evicts "a"
		m, err := p.Manager(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		managers = append(managers, m)
	}
	if st := p.Status(); st.Evicted != 1 {
		t.Fatalf("evicted %d accounts, want 1", st.Evicted)
	}
	// A request for "d", whose token has expired, gives up on the refresh
	// it started; the refresh goes on in the background.
	d := managers[4]
	rctx, cancel := context.WithCancel(ctx)
	go func() {
		<-entered
		cancel()
	}()
	if _, err := d.Token(rctx); err == nil {
		t.Fatal("the request did not give up")
	}
	if d.live.Load() == 0 {
		t.Fatal("no refresh running in the background")
	}

	stop()
	select {
	case <-ran:
		t.Fatal("Run returned while a refresh it started was still running")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	<-ran
	for i, m := range managers {
		if n := m.live.Load(); n != 0 {
			t.Errorf("manager %d (%q): %d goroutines still running after Run returned", i, m.key, n)
		}
	}
	if g := d.state.Load().grant; g == nil || g.AccessToken != "access-new" {
		t.Error("the refresh Run waited for did not finish")
	}
	// After Run, a manager refreshes on its caller's goroutine only.
	e, err := p.Manager(ctx, "e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Token(ctx); err == nil || e.live.Load() != 0 {
		t.Fatalf("after Run: Token = %v, %d goroutines", err, e.live.Load())
	}
}
