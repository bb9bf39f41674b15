package token_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// flakyStore refuses to store a refreshed grant (a write without a lease)
// while down is set; leases and reads still work.
type flakyStore struct {
	token.Store
	down atomic.Bool
}

func (s *flakyStore) CompareAndSwap(ctx context.Context, key string, version int64, rec token.Record) (int64, error) {
	if s.down.Load() && rec.Grant != nil && rec.Lease == nil {
		return 0, errors.New("store unavailable")
	}
	return s.Store.CompareAndSwap(ctx, key, version, rec)
}

// A refreshed grant the store refuses is kept in memory and reported as
// unpersisted: the old token is served while it lasts, then the new one;
// the next attempt persists it.
func TestUnpersistedGrantIsKeptAndRetried(t *testing.T) {
	e := newEnv(t, time.Hour)
	store := &flakyStore{Store: e.store}
	m := e.manager("a", store)
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	ctx := context.Background()
	g0, _ := m.Token(ctx)

	store.down.Store(true)
	e.clk.Advance(58 * time.Minute) // due, still valid
	if _, err := m.ForceRefresh(ctx, nil); err == nil {
		t.Fatal("refresh reported success with the store down")
	}
	if g, err := m.Token(ctx); err != nil || g.AccessToken != g0.AccessToken {
		t.Fatalf("old valid token not served: %v", err)
	}
	if !m.Status().Unpersisted {
		t.Fatal("status does not report the unpersisted grant")
	}

	e.clk.Advance(3 * time.Minute) // the old token has expired
	g1, err := m.Token(ctx)
	if err != nil || g1.AccessToken == g0.AccessToken || !e.fake.TokenActive(g1.AccessToken.Reveal()) {
		t.Fatalf("the refreshed token is not served once the old one expired: %v", err)
	}
	if !m.Status().Unpersisted {
		t.Fatal("status forgot the grant is not persisted")
	}

	store.down.Store(false)
	e.clk.Advance(time.Minute) // past the backoff
	if _, err := m.ForceRefresh(ctx, g1); err != nil {
		t.Fatalf("persist retry: %v", err)
	}
	if m.Status().Unpersisted {
		t.Fatal("still unpersisted after the store came back")
	}
	rec, _, _ := e.store.Load(ctx, "")
	if rec.Grant == nil || !e.fake.RefreshTokenActive(rec.Grant.RefreshToken.Reveal()) {
		t.Fatal("the stored refresh token is not the live one")
	}
	if st := e.fake.Stats(); st.RefreshReuse != 0 || st.Refreshes != 1 {
		t.Fatalf("refreshes %d, reuse %d: want one refresh, no reuse", st.Refreshes, st.RefreshReuse)
	}
}
