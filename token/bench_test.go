package token_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// benchManager returns a started manager holding a grant valid for an hour,
// loaded from a file store as at startup.
func benchManager(b *testing.B) *token.Manager {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	store := token.NewFileStore(filepath.Join(b.TempDir(), "token.json"))
	now := time.Now()
	g := &token.Grant{
		AccessToken: "bench-access", RefreshToken: "bench-refresh", TokenType: "Bearer",
		Scope: "openid api offline_access", Expiry: now.Add(time.Hour), ObtainedAt: now,
	}
	if _, err := store.CompareAndSwap(ctx, "", 0, token.Record{Grant: g}); err != nil {
		b.Fatal(err)
	}
	m := token.NewManager(token.Options{
		Store:       store,
		Credentials: token.StaticCredentials{ID: "bench", Secret: "bench-secret"},
		Endpoint:    token.Endpoint{TokenURL: "http://127.0.0.1:1/unused", RefreshBefore: 5 * time.Minute},
	})
	m.Load(ctx)
	go m.Run(ctx)
	if _, err := m.Token(ctx); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkManagerToken is the hot path every proxied request takes: reading
// the held grant.
func BenchmarkManagerToken(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkManagerTokenParallel(b *testing.B) {
	m := benchManager(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
