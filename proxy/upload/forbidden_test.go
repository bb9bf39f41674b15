package upload

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Twenty PublicAPI 403s in a row that are a permission Panopto does not
// grant (not an expired bearer), met through an account's real Manager:
// the refresh token is rotated at most once, and each 403 is the answer.
func TestUploadForbiddenRotatesAtMostOnce(t *testing.T) {
	clk := testsupport.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	e := newTestEnv(t, false, panoptofake.Options{Now: clk.Now}, Options{PartSize: 5 * mib})
	m := token.NewPool(token.PoolOptions{
		Store:       token.NewFileStore(filepath.Join(t.TempDir(), "token.json")),
		Credentials: token.StaticCredentials{ID: clientID, Secret: clientSecret, Source: "env", Username: "alice", Password: "wonderland"},
		PoolSettings: token.PoolSettings{Endpoint: token.Endpoint{
			TokenURL: e.ts.URL + "/Panopto/oauth2/connect/token", ClientAuth: "basic",
			Scopes: []string{"openid", "api", "offline_access"}, Timeout: 5 * time.Second, RefreshBefore: 5 * time.Minute,
		}},
		HTTPClient: e.ts.Client(),
		Now:        clk.Now,
		Grant:      token.GrantPassword,
	}).Default()
	ctx := context.Background()
	if _, err := m.Token(ctx); err != nil {
		t.Fatalf("login: %v", err)
	}
	denied := make([]panoptofake.Fault, 50)
	for i := range denied {
		denied[i] = panoptofake.FaultStatus(http.StatusForbidden)
	}
	e.pan.InjectAPIFaults(denied...)
	clk.Advance(2 * time.Minute) // the bearer is older than a minute
	for i := range 20 {
		_, err := e.up.Get(ctx, m, "11111111-2222-3333-4444-555555555555")
		var ue *upstreamError
		if !errors.As(err, &ue) || ue.status != http.StatusForbidden {
			t.Fatalf("call %d: %v, want Panopto's 403", i+1, err)
		}
	}
	st := e.pan.Stats()
	if st.Refreshes > 1 || st.TokenCalls["refresh_token"] > 1 || st.TokenCalls["password"] != 1 {
		t.Fatalf("20 403s: %d refreshes, token calls %v; want at most one refresh", st.Refreshes, st.TokenCalls)
	}
	if st.APICalls != 20+st.Refreshes {
		t.Errorf("Panopto saw %d calls, want %d", st.APICalls, 20+st.Refreshes)
	}
}
