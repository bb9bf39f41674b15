package token

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestFileStoreList(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := NewFileStore(filepath.Join(dir, "token.json"))
	if got, err := s.List(ctx, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("empty List = %v, %v", got, err)
	}
	g := &Grant{AccessToken: "at", RefreshToken: "rt", Expiry: time.Now().Add(time.Hour)}
	for _, k := range []string{"", "carol", "alice", "jo.bloggs@example.edu", "bob", TicketMarkerKey("alice")} {
		rec := Record{Grant: g}
		if k == "bob" {
			rec = Record{Dropped: droppedInvalidGrant}
		}
		if k == TicketMarkerKey("alice") {
			rec = Record{Ticket: &TicketMark{IssuedAt: time.Unix(0, 1), ID: "x"}}
		}
		if _, err := s.CompareAndSwap(ctx, k, 0, rec); err != nil {
			t.Fatal(err)
		}
	}
	// A record written before records named their account: named through
	// its login's identity when that hashes to its file name.
	legacy := toFileRecord(Record{Grant: &Grant{AccessToken: "x", RefreshToken: "y", Identity: &Identity{Subject: "s-1", PreferredUsername: `Deakin\Dave`}}}, 3)
	data, _ := json.Marshal(legacy)
	if err := os.WriteFile(s.file("dave"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// One without identity stays unnamed; litter is ignored.
	data, _ = json.Marshal(toFileRecord(Record{Grant: g}, 1))
	if err := os.WriteFile(s.file("erin"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".token.account-abc.json.tmp-1"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}

	all := []string{"alice", "bob", "carol", "dave", "jo.bloggs@example.edu"}
	for _, tc := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 100, all},
		{"", 0, all},
		{"", 2, all[:2]},
		{"bob", 2, all[2:4]},
		{"dave", 100, all[4:]},
		{"zed", 100, nil},
	} {
		got, err := s.List(ctx, tc.after, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, %d) = %q, %v; want %q", tc.after, tc.limit, got, err, tc.want)
		}
	}
	if rec, _, err := s.Load(ctx, "dave"); err != nil || rec.Grant == nil {
		t.Errorf("Load(dave) = %+v, %v", rec, err)
	}
}
