package vault_test

import (
	"context"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// heldStore holds its first Load after reading: the record it returns is
// the one stored when the read began.
type heldStore struct {
	token.Store
	read, release chan struct{}
	first         bool
}

func (s *heldStore) Load(ctx context.Context, key string) (token.Record, int64, error) {
	rec, ver, err := s.Store.Load(ctx, key)
	if s.first {
		s.first = false
		close(s.read)
		<-s.release
	}
	return rec, ver, err
}

// A manager's first read of the Vault record is slow, and a login stores a
// new grant (a newer KV version) meanwhile: the older version the read
// returns is not adopted.
func TestManagerKeepsNewerVersion(t *testing.T) {
	t.Parallel()
	_, vs := startStore(t)
	ctx := ctxT(t)
	now := time.Now()
	old := &token.Grant{AccessToken: "access-old", RefreshToken: "refresh-old", Expiry: now.Add(time.Hour), ObtainedAt: now.Add(-time.Minute)}
	if _, err := vs.CompareAndSwap(ctx, "", 0, token.Record{Grant: old}); err != nil {
		t.Fatal(err)
	}
	store := &heldStore{Store: vs, read: make(chan struct{}), release: make(chan struct{}), first: true}
	p := token.NewPool(token.PoolOptions{Store: store, Holder: "pod-a"})
	m := p.Default()
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := make(chan struct{})
	go func() { p.Load(mctx); close(started); p.Run(mctx) }()
	<-store.read
	login := &token.Grant{AccessToken: "access-new", RefreshToken: "refresh-new", Expiry: now.Add(time.Hour), ObtainedAt: now}
	if err := m.Install(ctx, login); err != nil {
		t.Fatal(err)
	}
	close(store.release)
	<-started
	g, err := m.Token(ctx)
	if err != nil || g.AccessToken != login.AccessToken {
		t.Fatalf("after the slow read: %v, holding the login's grant: %v", err, g != nil && g.AccessToken == login.AccessToken)
	}
}
