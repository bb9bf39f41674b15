package token

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestFileStoreDelete(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := NewFileStore(filepath.Join(dir, "token.json"))
	data := json.RawMessage(`{"id":"u-1"}`)
	for i := range 40 {
		v, err := s.CompareAndSwap(ctx, "upload/u-"+string(rune('a'+i%26))+string(rune('a'+i/26)), 0, Record{Data: data})
		if err != nil || v != 1 {
			t.Fatal(v, err)
		}
	}
	v, _ := s.CompareAndSwap(ctx, "upload/u-1", 0, Record{Data: data})
	if err := s.Delete(ctx, "upload/u-1", v+1); !errors.Is(err, ErrConflict) {
		t.Errorf("Delete at a later version: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "upload/u-1", v); err != nil {
		t.Fatal(err)
	}
	if _, got, err := s.Load(ctx, "upload/u-1"); got != 0 || err != nil {
		t.Errorf("Load after Delete: version %d, %v", got, err)
	}
	if err := s.Delete(ctx, "upload/u-1", 0); err != nil {
		t.Errorf("Delete of what is gone at 0: %v", err)
	}
	if got, err := s.CompareAndSwap(ctx, "upload/u-1", 0, Record{Data: data}); got != 1 || err != nil {
		t.Errorf("CompareAndSwap at 0 after Delete = %d, %v", got, err)
	}
	// Accounts and ticket markers are never deleted.
	if _, err := s.CompareAndSwap(ctx, "alice", 0, Record{Dropped: "logout"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"alice", "", TicketMarkerKey("alice")} {
		if err := s.Delete(ctx, k, 1); err == nil || errors.Is(err, ErrConflict) {
			t.Errorf("Delete(%q) = %v, want a refusal", k, err)
		}
	}
	if _, v, _ := s.Load(ctx, "alice"); v != 1 {
		t.Errorf("alice's record: version %d", v)
	}
	// Lock files of a kind are shared: deleting every record leaves no
	// more than lockStripes of them.
	keys, err := s.ListKeys(ctx, "upload/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := s.Delete(ctx, k, 1); err != nil {
			t.Fatal(k, err)
		}
	}
	locks, _ := filepath.Glob(filepath.Join(dir, "token.upload*"))
	if len(locks) > lockStripes {
		t.Errorf("%d files left for deleted upload records: %v", len(locks), locks)
	}
	for _, l := range locks {
		if filepath.Ext(l) != ".lock" {
			t.Errorf("left: %s", l)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "token.account-"+hashOf("alice")+".json")); err != nil {
		t.Error(err)
	}
}

// hashOf is the file name hash of key.
func hashOf(key string) string {
	s := NewFileStore("token.json")
	n := filepath.Base(s.file(key))
	return n[len("token.account-") : len(n)-len(".json")]
}

// TestFileStoreDeleteRacesWrite: a delete and a write at the same version;
// exactly one wins and the other gets ErrConflict, whichever comes first.
func TestFileStoreDeleteRacesWrite(t *testing.T) {
	ctx := t.Context()
	s := NewFileStore(filepath.Join(t.TempDir(), "token.json"))
	for i := range 50 {
		key := "idem/alice/" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		v, err := s.CompareAndSwap(ctx, key, 0, Record{Data: json.RawMessage(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var delErr, casErr error
		wg.Go(func() { delErr = s.Delete(ctx, key, v) })
		wg.Go(func() { _, casErr = s.CompareAndSwap(ctx, key, v, Record{Data: json.RawMessage(`{"again":true}`)}) })
		wg.Wait()
		if (delErr == nil) == (casErr == nil) || !errors.Is(delErr, ErrConflict) && !errors.Is(casErr, ErrConflict) {
			t.Fatalf("delete: %v, write: %v; want exactly one ErrConflict", delErr, casErr)
		}
		rec, got, err := s.Load(ctx, key)
		if delErr == nil && (got != 0 || err != nil) || casErr == nil && (got != v+1 || string(rec.Data) != `{"again":true}`) {
			t.Fatalf("after the race: %+v version %d, %v (delete %v, write %v)", rec, got, err, delErr, casErr)
		}
	}
}
