package vault_test

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

func TestStoreDelete(t *testing.T) {
	t.Parallel()
	srv, s := startStore(t)
	ctx := ctxT(t)
	data := json.RawMessage(`{"id":"u-1"}`)
	for _, k := range []string{"upload/u-1", "upload/u-2", "watch/u-1"} {
		if _, err := s.CompareAndSwap(ctx, k, 0, token.Record{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.CompareAndSwap(ctx, "upload/u-1", 1, token.Record{Data: data})
	if err != nil || v != 2 {
		t.Fatal(v, err)
	}
	if err := s.Delete(ctx, "upload/u-1", 1); !errors.Is(err, token.ErrConflict) {
		t.Errorf("Delete at an old version: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "upload/u-1", 2); err != nil {
		t.Fatal(err)
	}
	if rec, v, err := s.Load(ctx, "upload/u-1"); v != 0 || err != nil || rec.Data != nil {
		t.Errorf("Load after Delete = %+v, %d, %v", rec, v, err)
	}
	if got, err := s.ListKeys(ctx, "upload/", "", 0); err != nil || !slices.Equal(got, []string{"upload/u-2"}) {
		t.Errorf("ListKeys after Delete = %q, %v (the metadata must go too)", got, err)
	}
	if err := s.Delete(ctx, "upload/u-1", 0); err != nil {
		t.Errorf("Delete of what is gone at 0: %v", err)
	}
	if v, err := s.CompareAndSwap(ctx, "upload/u-1", 0, token.Record{Data: data}); v != 1 || err != nil {
		t.Errorf("CompareAndSwap at 0 after Delete = %d, %v", v, err)
	}
	// Accounts, the default grant and ticket markers are never deleted.
	for _, k := range []string{"alice", "", token.TicketMarkerKey("alice")} {
		if _, err := s.CompareAndSwap(ctx, k, 0, token.Record{Dropped: "logout"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, k, 1); err == nil || errors.Is(err, token.ErrConflict) {
			t.Errorf("Delete(%q) = %v, want a refusal", k, err)
		}
	}

	// A tombstone left by a replica that died before removing the
	// metadata: while young, it stops every writer; once old, a writer
	// replaces it and a Delete removes it.
	root := srv.Client(t)
	for _, tc := range []struct {
		age      time.Duration
		loadsAs  int64
		writable bool
	}{
		{time.Second, 0, false},
		{2 * time.Hour, 2, true},
	} {
		p := "panopto/token/records/idem/alice=2Fab"
		if _, err := root.KVv2("secret").Put(ctx, p, map[string]any{"data": "{}"}); err != nil {
			t.Fatal(err)
		}
		if _, err := root.KVv2("secret").Put(ctx, p, map[string]any{"deleted": time.Now().Add(-tc.age).UTC().Format(time.RFC3339Nano)}); err != nil {
			t.Fatal(err)
		}
		rec, v, err := s.Load(ctx, "idem/alice/ab")
		if err != nil || v != tc.loadsAs || rec.Data != nil {
			t.Errorf("tombstone %v old: Load = %+v, %d, %v; want empty at %d", tc.age, rec, v, err, tc.loadsAs)
		}
		nv, err := s.CompareAndSwap(ctx, "idem/alice/ab", v, token.Record{Data: data})
		if tc.writable != (err == nil) || !tc.writable && !errors.Is(err, token.ErrConflict) {
			t.Errorf("tombstone %v old: CompareAndSwap at %d = %v", tc.age, v, err)
		}
		if tc.writable {
			if err := s.Delete(ctx, "idem/alice/ab", nv); err != nil {
				t.Error(err)
			}
		}
		if err := root.KVv2("secret").DeleteMetadata(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreDeleteRacesWrite: a delete and a write at the same version;
// exactly one wins, the other gets ErrConflict.
func TestStoreDeleteRacesWrite(t *testing.T) {
	t.Parallel()
	_, s := startStore(t)
	ctx := ctxT(t)
	for i := range 20 {
		key := "idem/alice/k" + string(rune('a'+i))
		v, err := s.CompareAndSwap(ctx, key, 0, token.Record{Data: json.RawMessage(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var delErr, casErr error
		wg.Go(func() { delErr = s.Delete(ctx, key, v) })
		wg.Go(func() {
			_, casErr = s.CompareAndSwap(ctx, key, v, token.Record{Data: json.RawMessage(`{"again":true}`)})
		})
		wg.Wait()
		if (delErr == nil) == (casErr == nil) || !errors.Is(delErr, token.ErrConflict) && !errors.Is(casErr, token.ErrConflict) {
			t.Fatalf("delete: %v, write: %v; want exactly one ErrConflict", delErr, casErr)
		}
		rec, got, err := s.Load(ctx, key)
		if delErr == nil && (got != 0 || err != nil) || casErr == nil && (got != v+1 || string(rec.Data) != `{"again":true}`) {
			t.Fatalf("after the race: %+v version %d, %v (delete %v, write %v)", rec, got, err, delErr, casErr)
		}
	}
}
