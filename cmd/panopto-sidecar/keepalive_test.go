package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

// TestKeepAlive: against a Panopto whose refresh tokens die after 12s of
// disuse, three students connect; only the last stays in memory
// (max_cache 1). With accounts.keep_alive the idle alice can still use
// Panopto after her refresh token's lifetime has passed, and carol, whose
// grant was revoked at Panopto, is listed by GET
// /-/accounts?state=disconnected and tried once only; with the file store
// and with Vault. Without keep-alive, alice's grant is dead by then.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		store     string
		keepAlive string
		aliceCode int
	}{
		{"file", "4s", http.StatusOK},
		{"file", "0s", http.StatusServiceUnavailable},
		{"vault", "4s", http.StatusOK},
	} {
		t.Run(tc.store+" keep_alive "+tc.keepAlive, func(t *testing.T) {
			t.Parallel()
			const refreshTTL = 12 * time.Second
			addr := holdAddr(t)
			pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: 3 * time.Second, RefreshTTL: refreshTTL})
			dir := t.TempDir()
			cfg := baseConfig(pan.URL, dir)
			var env map[string]string
			storedRefresh := func(account string) string {
				rec, _, err := token.NewFileStore(filepath.Join(dir, "panopto-token.json")).Load(context.Background(), account)
				if err != nil || rec.Grant == nil {
					t.Fatalf("load %s: %+v %v", account, rec, err)
				}
				return rec.Grant.RefreshToken.Reveal()
			}
			if tc.store == "vault" {
				vs := vaulttest.StartDev(t)
				registerSecret(vs.RootToken())
				env = map[string]string{"VAULT_TOKEN": vs.RootToken()}
				cfg = strings.Replace(cfg, "token_store: {type: file", "vault: {address: "+vs.Addr()+", auth: token, mount: secret}\ntoken_store: {type: vault, path: panopto/token}\n#", 1)
				kv := vs.Client(t).KVv2("secret")
				storedRefresh = func(account string) string {
					sec, err := kv.Get(context.Background(), "panopto/token/accounts/"+account)
					if err != nil {
						t.Fatalf("read %s: %v", account, err)
					}
					rt, _ := sec.Data["refresh_token"].(string)
					return rt
				}
			}
			cfg += fmt.Sprintf(`accounts:
  mode: login
  return_to: ["https://ontrack.example/panopto/"]
  identity_claim: sub
  max_cache: 1
  keep_alive: %s
  keep_alive_rate: 50
`, tc.keepAlive)
			sc := startSidecar(t, dir, addr, cfg, env)

			var aliceAt time.Time
			for _, a := range []string{"alice", "carol", "bob"} {
				status, loc, page := followLink(t, mustLink(t, sc.URL, a))
				wantBack(t, status, loc, page, a, "")
				if a == "alice" {
					aliceAt = time.Now()
				}
			}
			if tc.keepAlive != "0s" {
				revokeAt(t, pan.URL, storedRefresh("carol"))
				testsupport.WaitFor(t, 15*time.Second, "carol listed as disconnected", func() bool {
					return slices.Equal(disconnectedOf(t, sc.URL), []string{"carol"})
				})
			}
			testsupport.WaitFor(t, 30*time.Second, "alice's refresh token outlived", func() bool {
				return time.Since(aliceAt) > refreshTTL+2*time.Second
			})
			if code, body := apiAs(t, sc.URL, "/Panopto/api/v1/whoami", "alice"); code != tc.aliceCode {
				t.Fatalf("alice after %s idle: %d %s", time.Since(aliceAt), code, body)
			}
			if tc.keepAlive == "0s" {
				return
			}
			metrics := fetch(t, sc.URL+"/metrics")
			if n := metricValue(metrics, `panopto_sidecar_keepalive_refreshes_total{result="refused"}`); n != 1 {
				t.Errorf("refused keep-alive refreshes: %v; want 1 (carol, never retried)\n%s", n, metrics)
			}
			if n := metricValue(metrics, `panopto_sidecar_keepalive_refreshes_total{result="ok"}`); n < 2 {
				t.Errorf("ok keep-alive refreshes: %v; want alice's at least", n)
			}
			if s := pan.Stats(); s.TokenCalls["refresh_token"]-s.Refreshes != 1 {
				t.Errorf("%d refresh calls refused; want 1 (carol's, never retried)", s.TokenCalls["refresh_token"]-s.Refreshes)
			}
			if st := accountOf(t, sc.URL, "carol"); st.Connected {
				t.Errorf("carol: %+v", st)
			}
			if code, _ := apiAs(t, sc.URL, "/Panopto/api/v1/whoami", "bob"); code != http.StatusOK {
				t.Errorf("bob: %d", code)
			}
		})
	}
}

// revokeAt revokes the grant of a refresh token at Panopto, as an
// administrator (or the student) would there.
func revokeAt(t *testing.T, panopto, refreshToken string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, panopto+"/Panopto/oauth2/connect/revocation",
		strings.NewReader(url.Values{"token": {refreshToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %v", err)
	}
	resp.Body.Close()
}

func disconnectedOf(t *testing.T, base string) []string {
	t.Helper()
	var v struct {
		Accounts []string `json:"accounts"`
		Next     string   `json:"next"`
	}
	if code := getJSON(t, base+"/-/accounts?state=disconnected&limit=10", &v); code != http.StatusOK {
		t.Fatalf("GET /-/accounts?state=disconnected: %d", code)
	}
	return v.Accounts
}
