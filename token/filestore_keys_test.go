package token

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFileStoreRecordsOfOtherKinds(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := NewFileStore(filepath.Join(dir, "token.json"))
	data := json.RawMessage(`{"id":"u-1","metadata":{"task_id":123,"unit":"SIT305"}}`)
	for _, k := range []string{"upload/u-2", "upload/u-1", "upload/u-3", "idem/alice/ab12", "alice"} {
		rec := Record{Data: data, Lease: &Lease{Holder: "pod-1"}}
		if k == "alice" {
			rec = Record{Grant: &Grant{AccessToken: "at", RefreshToken: "rt"}}
		}
		if _, err := s.CompareAndSwap(ctx, k, 0, rec); err != nil {
			t.Fatal(err)
		}
	}
	rec, v, err := s.Load(ctx, "upload/u-1")
	if err != nil || v != 1 || string(rec.Data) != string(data) || rec.Lease == nil || rec.Lease.Holder != "pod-1" || rec.Grant != nil {
		t.Fatalf("Load = %+v, %d, %v", rec, v, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "token.upload-*.json")); len(m) != 3 {
		t.Errorf("upload files %v, want 3 apart from the accounts'", m)
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"upload/", "", 0, []string{"upload/u-1", "upload/u-2", "upload/u-3"}},
		{"upload/", "upload/u-1", 1, []string{"upload/u-2"}},
		{"upload/u-3", "", 0, []string{"upload/u-3"}},
		{"idem/alice/", "", 0, []string{"idem/alice/ab12"}},
		{"idem/bob/", "", 0, nil},
		{"other/", "", 0, nil},
	} {
		got, err := s.ListKeys(ctx, tc.prefix, tc.after, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ListKeys(%q, %q, %d) = %v, %v; want %v", tc.prefix, tc.after, tc.limit, got, err, tc.want)
		}
	}
	if _, err := s.ListKeys(ctx, "alice", "", 0); err == nil {
		t.Error("ListKeys of an account prefix: no error")
	}
	// Accounts are listed as before, without the records.
	if got, err := s.List(ctx, "", 0); err != nil || !slices.Equal(got, []string{"alice"}) {
		t.Errorf("List = %v, %v", got, err)
	}
	// Nothing stored yet.
	empty := NewFileStore(filepath.Join(dir, "none", "token.json"))
	if got, err := empty.ListKeys(ctx, "upload/", "", 0); err != nil || got != nil {
		t.Errorf("empty ListKeys = %v, %v", got, err)
	}
	if f := filepath.Base(s.file(TicketMarkerKey("alice"))); !strings.HasPrefix(f, "token.account-") {
		t.Errorf("ticket marker file %s, want beside the accounts", f)
	}
}
