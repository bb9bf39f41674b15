package vault_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
)

func TestUnescapeKey(t *testing.T) {
	for _, k := range []string{"alice", "jo.bloggs@example.edu", "a=b/c", "Ünï", "-_09"} {
		got, ok := vault.UnescapeKey(vault.EscapeKey(k))
		if !ok || got != k {
			t.Errorf("UnescapeKey(EscapeKey(%q)) = %q, %v", k, got, ok)
		}
	}
	for _, seg := range []string{"", "dir/", "a=2", "a=zz", "a=2e", "a.b"} {
		if got, ok := vault.UnescapeKey(seg); ok {
			t.Errorf("UnescapeKey(%q) = %q, true; want false", seg, got)
		}
	}
}

func TestStoreList(t *testing.T) {
	t.Parallel()
	_, s := startStore(t)
	ctx := ctxT(t)
	if got, err := s.List(ctx, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("empty List = %q, %v", got, err)
	}
	g := &token.Grant{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}
	for _, k := range []string{"", "carol", "alice", "jo.bloggs@example.edu", "bob", token.TicketMarkerKey("alice")} {
		if _, err := s.CompareAndSwap(ctx, k, 0, token.Record{Grant: g}); err != nil {
			t.Fatal(err)
		}
	}
	all := []string{"alice", "bob", "carol", "jo.bloggs@example.edu"}
	for _, tc := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 100, all},
		{"", 0, all},
		{"", 2, all[:2]},
		{"bob", 1, all[2:3]},
		{"carol", 100, all[3:]},
		{"zed", 100, nil},
	} {
		got, err := s.List(ctx, tc.after, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, %d) = %q, %v; want %q", tc.after, tc.limit, got, err, tc.want)
		}
	}
}

func TestStoreListKeys(t *testing.T) {
	t.Parallel()
	_, s := startStore(t)
	ctx := ctxT(t)
	if got, err := s.ListKeys(ctx, "upload/", "", 0); err != nil || got != nil {
		t.Fatalf("empty ListKeys = %q, %v", got, err)
	}
	data := json.RawMessage(`{"id":"u-1"}`)
	for _, k := range []string{"upload/u-2", "upload/u-1", "upload/u.3", "idem/jo@x/ab", "alice"} {
		rec := token.Record{Data: data}
		if k == "alice" {
			rec = token.Record{Grant: &token.Grant{AccessToken: "at", RefreshToken: "rt"}}
		}
		if _, err := s.CompareAndSwap(ctx, k, 0, rec); err != nil {
			t.Fatal(err)
		}
	}
	if rec, v, err := s.Load(ctx, "upload/u.3"); err != nil || v != 1 || string(rec.Data) != string(data) {
		t.Fatalf("Load = %+v, %d, %v", rec, v, err)
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"upload/", "", 0, []string{"upload/u-1", "upload/u-2", "upload/u.3"}},
		{"upload/", "upload/u-1", 1, []string{"upload/u-2"}},
		{"idem/jo@x/", "", 0, []string{"idem/jo@x/ab"}},
		{"idem/bob/", "", 0, nil},
	} {
		got, err := s.ListKeys(ctx, tc.prefix, tc.after, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ListKeys(%q, %q, %d) = %q, %v; want %q", tc.prefix, tc.after, tc.limit, got, err, tc.want)
		}
	}
	if got, err := s.List(ctx, "", 0); err != nil || !slices.Equal(got, []string{"alice"}) {
		t.Errorf("List = %q, %v", got, err)
	}
}
