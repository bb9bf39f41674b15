package vault_test

import (
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
