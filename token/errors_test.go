package token

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStoreErrorsSayTheirPrefixOnce: a store that cannot be read fails
// a login, a logout and a refresh with a message that names the token
// store once, not once per layer ("token store: read before refreshing:
// token store: read ...").
func TestStoreErrorsSayTheirPrefixOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	expired := &Grant{AccessToken: "access-old", RefreshToken: "refresh-old", Expiry: now.Add(-time.Minute), ObtainedAt: now.Add(-time.Hour)}
	cases := []struct {
		name string
		call func(m *Manager) error
	}{
		{"login", func(m *Manager) error {
			return m.Install(ctx, &Grant{AccessToken: "a", RefreshToken: "r", Expiry: now.Add(time.Hour), ObtainedAt: now})
		}},
		{"logout", func(m *Manager) error { _, err := m.Forget(ctx, "logout"); return err }},
		{"refresh", func(m *Manager) error { _, err := m.ForceRefresh(ctx, nil); return err }},
		{"token", func(m *Manager) error { _, err := m.Token(ctx); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "token.json")
			if err := os.Mkdir(dir, 0o700); err != nil { // a directory where the file should be: every read fails
				t.Fatal(err)
			}
			m := NewManager(Options{Store: NewFileStore(dir), Credentials: StaticCredentials{ID: "cid", Secret: "secret"}})
			m.state.Store(&state{held: held{grant: expired, version: 1}})
			err := tc.call(m)
			if err == nil {
				t.Fatal("no error with an unreadable store")
			}
			if n := strings.Count(err.Error(), "token store:"); n != 1 {
				t.Errorf("%q names the token store %d times, want once", err, n)
			}
			if n := strings.Count(err.Error(), dir); n != 1 {
				t.Errorf("%q names the file %d times, want once", err, n)
			}
			if tc.name == "token" && !errors.Is(err, ErrNotConnected) {
				t.Errorf("Token: %v, want ErrNotConnected", err)
			}
		})
	}
}
