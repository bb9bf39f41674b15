package vault_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/hashicorp/vault/api"
)

func startStore(t *testing.T) (*vaulttest.Server, *vault.Store) {
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)
	token := newToken(t, root, "1h", true)
	c := newClient(t, vault.Config{Address: srv.Addr()}, func(k string) string {
		return map[string]string{"VAULT_TOKEN": token}[k]
	}, nil)
	return srv, vault.NewStore(c, "panopto/token")
}

func TestStoreCompareAndSwap(t *testing.T) {
	t.Parallel()
	_, s := startStore(t)
	ctx := ctxT(t)

	rec, v, err := s.Load(ctx, "")
	if err != nil || v != 0 || rec.Grant != nil || rec.Lease != nil || rec.Dropped != "" {
		t.Fatalf("empty Load = %+v, %d, %v", rec, v, err)
	}
	exp := time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.FixedZone("AEDT", 11*3600))
	want := token.Record{
		Grant: &token.Grant{AccessToken: "access-1", RefreshToken: "refresh-1", TokenType: "Bearer", Scope: "openid api offline_access",
			Expiry: exp, ObtainedAt: exp.Add(-time.Hour + time.Nanosecond)},
		Lease:   &token.Lease{Holder: "pod-a", Until: exp.Add(30*time.Second + 7)},
		Dropped: "",
	}
	v1, err := s.CompareAndSwap(ctx, "", 0, want)
	if err != nil || v1 != 1 {
		t.Fatalf("first write = %d, %v", v1, err)
	}
	got, v, err := s.Load(ctx, "")
	if err != nil || v != v1 {
		t.Fatalf("Load = %d, %v", v, err)
	}
	assertRecordEqual(t, got, want)

	// Version 0 again, and a stale version: conflict, nothing written.
	for _, stale := range []int64{0, v1 + 1} {
		if _, err := s.CompareAndSwap(ctx, "", stale, token.Record{Dropped: "stale"}); !errors.Is(err, token.ErrConflict) {
			t.Errorf("CAS at %d: err = %v, want ErrConflict", stale, err)
		}
	}
	v2, err := s.CompareAndSwap(ctx, "", v1, token.Record{Dropped: "logout"})
	if err != nil || v2 != v1+1 {
		t.Fatalf("second write = %d, %v", v2, err)
	}
	got, _, _ = s.Load(ctx, "")
	assertRecordEqual(t, got, token.Record{Dropped: "logout"})

	// Accounts live at their own escaped paths.
	va, err := s.CompareAndSwap(ctx, "jo.bloggs@example.edu", 0, token.Record{Dropped: "acct"})
	if err != nil || va != 1 {
		t.Fatalf("account write = %d, %v", va, err)
	}
	if got, v, err := s.Load(ctx, "jo.bloggs@example.edu"); err != nil || v != 1 || got.Dropped != "acct" {
		t.Fatalf("account Load = %+v, %d, %v", got, v, err)
	}
	if _, v, _ := s.Load(ctx, "jo.bloggs@example.ed"); v != 0 {
		t.Errorf("another account sees version %d", v)
	}
}

func TestStoreRaceExactlyOneWins(t *testing.T) {
	t.Parallel()
	_, s := startStore(t)
	ctx := ctxT(t)
	v, err := s.CompareAndSwap(ctx, "", 0, token.Record{Dropped: "start"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		wins      []int
		conflicts int
		others    []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.CompareAndSwap(ctx, "", v, token.Record{Lease: &token.Lease{Holder: string(rune('a' + i))}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins = append(wins, i)
			case errors.Is(err, token.ErrConflict):
				conflicts++
			default:
				others = append(others, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(wins) != 1 || conflicts != n-1 || len(others) != 0 {
		t.Fatalf("wins %v, conflicts %d, other errors %v", wins, conflicts, others)
	}
	got, gv, err := s.Load(ctx, "")
	if err != nil || gv != v+1 || got.Lease == nil || got.Lease.Holder != string(rune('a'+wins[0])) {
		t.Fatalf("stored %+v at %d (%v), winner %d", got, gv, err, wins[0])
	}
}

func TestStoreCorruptAndDeleted(t *testing.T) {
	t.Parallel()
	srv, s := startStore(t)
	root := srv.Client(t)
	ctx := ctxT(t)

	pv := putKV(t, root, "panopto/token", map[string]any{"access_token": "x", "expires_at": "soon"})
	_, gv, err := s.Load(ctx, "")
	if !errors.Is(err, token.ErrCorrupt) || gv != int64(pv) {
		t.Fatalf("Load of a corrupt record = %d, %v; want ErrCorrupt at %d", gv, err, pv)
	}
	pv = putKV(t, root, "panopto/token", map[string]any{"note": "written by hand"})
	if _, _, err := s.Load(ctx, ""); !errors.Is(err, token.ErrCorrupt) {
		t.Fatalf("Load of foreign data: %v", err)
	}

	// Deleting the latest version: Load says "absent" but keeps the version,
	// so the next CAS is accepted by Vault.
	v, err := s.CompareAndSwap(ctx, "", int64(pv), token.Record{Dropped: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.KVv2("secret").Delete(ctx, "panopto/token"); err != nil {
		t.Fatal(err)
	}
	rec, dv, err := s.Load(ctx, "")
	if err != nil || dv != v || rec.Grant != nil || rec.Dropped != "" {
		t.Fatalf("Load after delete = %+v, %d, %v; want empty at %d", rec, dv, err, v)
	}
	if _, err := s.CompareAndSwap(ctx, "", 0, token.Record{}); !errors.Is(err, token.ErrConflict) {
		t.Errorf("CAS 0 over a deleted version: %v, want ErrConflict", err)
	}
	nv, err := s.CompareAndSwap(ctx, "", dv, token.Record{Dropped: "after delete"})
	if err != nil || nv != dv+1 {
		t.Fatalf("CAS after delete = %d, %v", nv, err)
	}
	// Destroyed likewise.
	if err := root.KVv2("secret").Destroy(ctx, "panopto/token", []int{int(nv)}); err != nil {
		t.Fatal(err)
	}
	if _, dv, err := s.Load(ctx, ""); err != nil || dv != nv {
		t.Fatalf("Load after destroy = %d, %v", dv, err)
	}
	// Metadata deleted: back to nothing, version 0.
	if err := root.KVv2("secret").DeleteMetadata(ctx, "panopto/token"); err != nil {
		t.Fatal(err)
	}
	if _, dv, err := s.Load(ctx, ""); err != nil || dv != 0 {
		t.Fatalf("Load after metadata delete = %d, %v", dv, err)
	}
	if v, err := s.CompareAndSwap(ctx, "", 0, token.Record{}); err != nil || v != 1 {
		t.Fatalf("CAS 0 after metadata delete = %d, %v", v, err)
	}
}

func TestStorePermissionDenied(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	if err := root.Sys().PutPolicy("readonly", `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	tok, err := root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"readonly"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, vault.Config{Address: srv.Addr()}, func(k string) string {
		return map[string]string{"VAULT_TOKEN": tok.Auth.ClientToken}[k]
	}, nil)
	s := vault.NewStore(c, "panopto/token")
	_, err = s.CompareAndSwap(ctxT(t), "", 0, token.Record{})
	if !errors.Is(err, vault.ErrDenied) || errors.Is(err, token.ErrConflict) || errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("write without permission: %v", err)
	}
}

func assertRecordEqual(t *testing.T, got, want token.Record) {
	t.Helper()
	if got.Dropped != want.Dropped || (got.Grant == nil) != (want.Grant == nil) || (got.Lease == nil) != (want.Lease == nil) {
		t.Fatalf("record = %+v, want %+v", got, want)
	}
	if g, w := got.Grant, want.Grant; g != nil {
		if g.AccessToken.Reveal() != w.AccessToken.Reveal() || g.RefreshToken.Reveal() != w.RefreshToken.Reveal() ||
			g.TokenType != w.TokenType || g.Scope != w.Scope {
			t.Errorf("grant fields differ: %+v vs %+v", g, w)
		}
		if !g.Expiry.Equal(w.Expiry) || !g.ObtainedAt.Equal(w.ObtainedAt) {
			t.Errorf("grant times %v/%v, want %v/%v (nanoseconds kept)", g.Expiry, g.ObtainedAt, w.Expiry, w.ObtainedAt)
		}
	}
	if g, w := got.Lease, want.Lease; g != nil {
		if g.Holder != w.Holder || !g.Until.Equal(w.Until) {
			t.Errorf("lease %+v, want %+v", *g, *w)
		}
	}
}
