package token

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is a Store in memory.
type memStore struct {
	mu   sync.Mutex
	recs map[string]Record
	vers map[string]int64
}

func newMemStore() *memStore {
	return &memStore{recs: map[string]Record{}, vers: map[string]int64{}}
}

func (s *memStore) Load(_ context.Context, key string) (Record, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs[key], s.vers[key], nil
}

func (s *memStore) CompareAndSwap(_ context.Context, key string, version int64, rec Record) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vers[key] != version {
		return 0, ErrConflict
	}
	s.vers[key]++
	s.recs[key] = rec
	return s.vers[key], nil
}

// countingEndpoint is a token endpoint whose n-th refresh grants scope
// "n<n>", so a grant says which refresh made it.
func countingEndpoint(t *testing.T) Endpoint {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"access_token": fmt.Sprintf("access-%d", k), "refresh_token": fmt.Sprintf("refresh-%d", k),
			"token_type": "Bearer", "expires_in": 3600, "scope": fmt.Sprintf("n%d", k),
		})
	}))
	t.Cleanup(srv.Close)
	return Endpoint{TokenURL: srv.URL + "/token", ClientAuth: "body", Timeout: 5 * time.Second}
}

// TestStatusIsOneSnapshot: while one goroutine refreshes, logs out and logs
// in again, readers of Status, Ready and Token never see a mix of two
// states. Every grant held was made by refresh number Refreshes (its scope
// says which), so a Status whose scope and refresh count disagree was read
// half before and half after a change.
func TestStatusIsOneSnapshot(t *testing.T) {
	m := NewManager(Options{
		Store: newMemStore(), Endpoint: countingEndpoint(t),
		Credentials: StaticCredentials{ID: "cid", Secret: "secret"},
	})
	ctx := t.Context()
	install := func() {
		t.Helper()
		now := time.Now()
		g := &Grant{AccessToken: "access-login", RefreshToken: "refresh-login", Expiry: now.Add(time.Hour), ObtainedAt: now,
			Scope: fmt.Sprintf("n%d", m.Status().Refreshes)}
		if err := m.Install(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	install()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Value
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				st := m.Status()
				reads.Add(1)
				switch {
				case st.ExpiresAt.IsZero() && (st.Connected || st.Reason != ReasonLoggedOut):
					bad.Store(fmt.Sprintf("no grant, yet connected=%v reason=%q", st.Connected, st.Reason))
				case !st.ExpiresAt.IsZero() && st.Scope != fmt.Sprintf("n%d", st.Refreshes):
					bad.Store(fmt.Sprintf("grant of scope %q with %d refreshes", st.Scope, st.Refreshes))
				case !st.ExpiresAt.IsZero() && !st.Connected:
					bad.Store(fmt.Sprintf("valid grant, yet not connected (%q)", st.Reason))
				}
				if ok, r := m.Ready(); !ok && r != ReasonLoggedOut {
					bad.Store(fmt.Sprintf("not ready for reason %q", r))
				}
				if g, err := m.Token(ctx); err == nil && g == nil {
					bad.Store("Token returned neither a grant nor an error")
				}
				runtime.Gosched()
			}
		})
	}
	for i := range 100 {
		if i%10 == 9 {
			if _, err := m.Forget(ctx, "logout"); err != nil {
				t.Fatal(err)
			}
			install()
			continue
		}
		if _, err := m.ForceRefresh(ctx, nil); err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatalf("a reader saw an inconsistent state: %s", b)
	}
	if st := m.Status(); st.Refreshes != 90 || st.Scope != "n90" {
		t.Fatalf("after the run: %d refreshes, scope %q", st.Refreshes, st.Scope)
	}
	t.Logf("%d reads", reads.Load())
}
