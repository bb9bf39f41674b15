package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// devVaultStore is a token store in a Vault dev server of its own.
func devVaultStore(tb testing.TB) Store {
	srv := vaulttest.StartDev(tb)
	getenv := func(k string) string { return map[string]string{"VAULT_TOKEN": srv.RootToken()}[k] }
	c, err := vault.New(context.Background(), vault.Config{Address: srv.Addr()}, getenv, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return vault.NewStore(c, "panopto/token")
}

// countingStore counts what is asked of the store.
type countingStore struct {
	Store
	loads, lists, listed, writes, deletes atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, key string) (token.Record, int64, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, key)
}

func (c *countingStore) ListKeys(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	c.lists.Add(1)
	keys, err := c.Store.ListKeys(ctx, prefix, after, limit)
	c.listed.Add(int64(len(keys)))
	return keys, err
}

func (c *countingStore) CompareAndSwap(ctx context.Context, key string, v int64, rec token.Record) (int64, error) {
	c.writes.Add(1)
	return c.Store.CompareAndSwap(ctx, key, v, rec)
}

func (c *countingStore) Delete(ctx context.Context, key string, v int64) error {
	c.deletes.Add(1)
	return c.Store.Delete(ctx, key, v)
}

func (c *countingStore) reset() {
	for _, n := range []*atomic.Int64{&c.loads, &c.lists, &c.listed, &c.writes, &c.deletes} {
		n.Store(0)
	}
}

// seedUpload writes an upload's record as a Watcher leaves it: active
// (polling, with its marker unless unmarked) or finished at done.
func seedUpload(tb testing.TB, w *Watcher, id string, active, unmarked bool, done time.Time) {
	tb.Helper()
	ctx := context.Background()
	r := record{Upload: Upload{ID: id, Account: "alice", State: StateComplete}, Start: done.Add(-time.Hour), Update: done}
	if active {
		r.Watching, r.NextPoll, r.Until = true, done.Add(time.Hour), done.Add(24*time.Hour)
		r.Upload.State = StateProcessing
		if !unmarked {
			if err := w.mark(ctx, id, done); err != nil {
				tb.Fatal(err)
			}
		}
	}
	data, _ := json.Marshal(r)
	if _, err := w.o.Store.CompareAndSwap(ctx, uploadKey(id), 0, token.Record{Data: data}); err != nil {
		tb.Fatal(err)
	}
}

func seedKey(tb testing.TB, w *Watcher, name string, created time.Time, lease *token.Lease) {
	tb.Helper()
	data, _ := json.Marshal(keyRecord{Account: "alice", Created: created, ID: "u", Done: lease == nil, Status: 201, Body: json.RawMessage(`{}`)})
	if _, err := w.o.Store.CompareAndSwap(context.Background(), idemKey("alice", name), 0, token.Record{Data: data, Lease: lease}); err != nil {
		tb.Fatal(err)
	}
}

// TestScanListsOnlyActive: with many finished uploads in the store, a
// scan lists the active watches only and reads no record.
func TestScanListsOnlyActive(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	cs := &countingStore{Store: token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))}
	w := New(Options{Store: cs, Now: func() time.Time { return now }})
	for i := range 200 {
		seedUpload(t, w, fmt.Sprintf("f-%03d", i), false, false, now.Add(-time.Hour))
	}
	for i := range 3 {
		seedUpload(t, w, fmt.Sprintf("a-%d", i), true, false, now)
	}
	cs.reset()
	if err := w.scan(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cs.lists.Load() != 1 || cs.listed.Load() != 3 || cs.loads.Load() != 0 {
		t.Errorf("scan: %d listings naming %d keys, %d loads; want 1 listing of the 3 active watches, no load",
			cs.lists.Load(), cs.listed.Load(), cs.loads.Load())
	}
	if len(w.local) != 3 || w.local[uploadKey("a-0")] == nil {
		t.Errorf("scan found %d watches", len(w.local))
	}
}

// TestSweep: the sweep deletes uploads finished more than Retention ago
// and idempotency keys past KeyTTL (unless a request holds one), keeps
// the others readable, and marks an active upload its replica did not.
func TestSweep(t *testing.T) {
	t.Run("file", func(t *testing.T) { testSweep(t, token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))) })
	t.Run("vault", func(t *testing.T) { testSweep(t, devVaultStore(t)) })
}

func testSweep(t *testing.T, store Store) {
	ctx := t.Context()
	clock := testsupport.NewClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	cs := &countingStore{Store: store}
	w := New(Options{Store: cs, Now: clock.Now, Retention: 30 * 24 * time.Hour})
	now := clock.Now()
	for i := range 4 {
		seedUpload(t, w, fmt.Sprintf("old-%d", i), false, false, now.Add(-31*24*time.Hour))
		seedUpload(t, w, fmt.Sprintf("new-%d", i), false, false, now.Add(-29*24*time.Hour))
	}
	seedUpload(t, w, "active-old", true, false, now.Add(-40*24*time.Hour)) // webhooks still pending, say
	seedUpload(t, w, "active-unmarked", true, true, now)
	seedKey(t, w, "old", now.Add(-25*time.Hour), nil)
	seedKey(t, w, "new", now.Add(-23*time.Hour), nil)
	seedKey(t, w, "old-held", now.Add(-25*time.Hour), &token.Lease{Holder: "pod-b", Until: now.Add(time.Minute)})

	if err := w.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	for id, kept := range map[string]bool{"old-0": false, "old-3": false, "new-0": true, "new-3": true, "active-old": true, "active-unmarked": true} {
		u, ok, err := w.Get(ctx, id)
		if err != nil || ok != kept || kept && u.ID != id {
			t.Errorf("Get(%s) after the sweep = %+v, %v, %v; want found %v", id, u, ok, err, kept)
		}
	}
	for name, kept := range map[string]bool{"old": false, "new": true, "old-held": true} {
		if _, v, err := cs.Load(ctx, idemKey("alice", name)); err != nil || (v != 0) != kept {
			t.Errorf("idempotency key %s: version %d, %v; want kept %v", name, v, err, kept)
		}
	}
	if markers, _ := cs.ListKeys(ctx, markerPrefix, "", 0); len(markers) != 2 {
		t.Errorf("markers after the sweep: %q; want both active uploads'", markers)
	}
	if n := w.Stats().Swept; n != 5 {
		t.Errorf("Swept = %d, want 5 (4 uploads, 1 key)", n)
	}
	// A claim of the swept key is a new upload.
	c, err := w.Claim(ctx, "alice", "old")
	if err != nil || c.State != ClaimNew {
		t.Fatalf("claim after the sweep = %+v, %v", c, err)
	}
	_ = c.Key.Finish(ctx, 201, []byte(`{}`))
}

// TestSweepTakesTurns: of the replicas sharing a store, one sweeps per
// Sweep; the others wait until then.
func TestSweepTakesTurns(t *testing.T) {
	clock := testsupport.NewClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	store := token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	a := New(Options{Store: store, Holder: "pod-a", Now: clock.Now})
	b := New(Options{Store: store, Holder: "pod-b", Now: clock.Now})
	ctx := t.Context()
	if next, ok := a.sweepDue(ctx, clock.Now()); !ok || !next.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("pod-a: sweep %v, next %v", ok, next)
	}
	if next, ok := b.sweepDue(ctx, clock.Now()); ok || !next.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("pod-b right after: sweep %v, next %v", ok, next)
	}
	clock.Advance(time.Hour)
	if _, ok := b.sweepDue(ctx, clock.Now()); !ok {
		t.Error("pod-b an hour later: no sweep")
	}
	if _, ok := a.sweepDue(ctx, clock.Now()); ok {
		t.Error("pod-a then: sweeps too")
	}
}

// TestFinishedWatchForgotten: a watch that needs no more work loses its
// marker and leaves the replica's memory; one whose record never came
// keeps its marker while Start may still be writing the record.
func TestFinishedWatchForgotten(t *testing.T) {
	ctx := t.Context()
	clock := testsupport.NewClock(time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC))
	store := token.NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	w := New(Options{Store: store, Now: clock.Now})
	seedUpload(t, w, "done", false, false, clock.Now())
	if err := w.mark(ctx, "done", clock.Now()); err != nil { // its replica died before deleting it
		t.Fatal(err)
	}
	if err := w.mark(ctx, "starting", clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.scan(ctx); err != nil || len(w.local) != 2 {
		t.Fatalf("scan: %d watches, %v", len(w.local), err)
	}
	for _, id := range []string{"done", "starting"} {
		w.local[uploadKey(id)].busy = true
		w.step(ctx, uploadKey(id))
	}
	if len(w.local) != 0 {
		t.Errorf("%d watches remembered after their steps", len(w.local))
	}
	if m, _ := store.ListKeys(ctx, markerPrefix, "", 0); len(m) != 1 || m[0] != markerKey(uploadKey("starting")) {
		t.Errorf("markers %q, want the one of the upload being started", m)
	}
	clock.Advance(2 * time.Minute)
	w.step(ctx, uploadKey("starting"))
	if m, _ := store.ListKeys(ctx, markerPrefix, "", 0); len(m) != 0 {
		t.Errorf("markers %q; a marker without its record past Hold must go", m)
	}
}
