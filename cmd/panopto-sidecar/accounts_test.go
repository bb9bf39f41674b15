package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// whoami asks the stand-in, through the sidecar, whose token arrived.
func whoami(base, account string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/Panopto/api/v1/whoami", nil)
	if account != "" {
		req.Header.Set("X-Panopto-User", account)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var w struct{ User string }
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &w)
	if resp.StatusCode != 200 {
		return resp.StatusCode, string(b), nil
	}
	return resp.StatusCode, w.User, nil
}

// interleave runs two users' requests concurrently and fails if a response
// carries another user's identity.
func interleave(t *testing.T, base string, users map[string]string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var wrong, failed atomic.Int32
	for acct, want := range users {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					code, user, err := whoami(base, acct)
					if err != nil || code != 200 {
						failed.Add(1)
						continue
					}
					if !strings.EqualFold(user, want) {
						wrong.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d responses carried another user's token", wrong.Load())
	}
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed", failed.Load())
	}
}

// TestAccountsIdentityProvider: accounts.mode idp mints each user's token on
// first use with Panopto's identity-provider password grant; two users
// interleaved under load never get each other's token; the account header
// never reaches Panopto.
func TestAccountsIdentityProvider(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	const appKey = "3f0e6d1c-app-key-for-unilms"
	pan := startPanopto(t, panoptofake.Options{
		RedirectURIs:      []string{"http://" + addr + "/redirect"},
		IdentityProviders: map[string]string{"unilms": appKey},
		AccessTTL:         2 * time.Second,
	})
	cfg := baseConfig(pan.URL, dir) + "accounts: {mode: idp, provider: unilms}\n"
	sc := startSidecar(t, dir, addr, cfg, map[string]string{"PANOPTO_APP_KEY": appKey})

	users := map[string]string{"alice": `unilms\alice`, "bob": `unilms\bob`}
	interleave(t, sc.URL, users, 60)
	// Across a refresh of each account (2 s tokens).
	testsupport.WaitFor(t, 5*time.Second, "a refresh of each account", func() bool { return pan.Stats().Refreshes >= 2 })
	interleave(t, sc.URL, users, 60)
	st := pan.Stats()
	if st.TokenCalls["password"] != 2 {
		t.Errorf("password grant calls = %d, want one per user", st.TokenCalls["password"])
	}
	if st.RefreshReuse != 0 || st.GrantsRevoked != 0 {
		t.Errorf("reuse %d revoked %d", st.RefreshReuse, st.GrantsRevoked)
	}
	// Status: counts, not names, unless asked.
	status := fetch(t, sc.URL+"/-/status")
	if strings.Contains(status, "alice") || !strings.Contains(status, `"cached":2`) {
		t.Errorf("status: %s", status)
	}
	var one struct {
		Account   string
		Connected bool
	}
	getJSON(t, sc.URL+"/-/status?account=alice", &one)
	if one.Account != "alice" || !one.Connected {
		t.Errorf("status?account=alice: %+v", one)
	}
	metrics := fetch(t, sc.URL+"/metrics")
	assertNoSecrets(t, append(secretsIn(t, dir), appKey, panoptofake.IdentityProviderPassword(`unilms\alice`, appKey)),
		map[string]string{"logs": sc.LogsAtStop(), "status": status, "metrics": metrics})
}

// TestAccountsLogin: accounts.mode login: each user connects once through
// a login link OnTrack asked for (POST /-/connect); an unconnected account
// gets 503 saying where to connect, never another user's token; logout
// revokes at Panopto.
func TestAccountsLogin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})
	cfg := baseConfig(pan.URL, dir) + "accounts: {mode: login, identity_claim: preferred_username}\n"
	sc := startSidecar(t, dir, addr, cfg, nil)

	loginAs := func(acct string) {
		code, out := connectLink(t, sc.URL, acct, "")
		if code != http.StatusCreated {
			t.Fatalf("connect %s: %d %v", acct, code, out)
		}
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		resp, err := c.Get(out["login_url"].(string))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "Connected to Panopto") {
			t.Fatalf("login %s: %d %s", acct, resp.StatusCode, b)
		}
	}
	// Without a link nobody logs in for an account.
	if code := statusCode(sc.URL + "/-/login?account=alice"); code != http.StatusForbidden {
		t.Fatalf("/-/login?account=alice without a link: %d", code)
	}
	loginAs("alice")
	loginAs("bob")
	interleave(t, sc.URL, map[string]string{"alice": "alice", "bob": "bob"}, 50)

	// carol never connected: 503 saying where to connect.
	code, body, _ := whoami(sc.URL, "carol")
	if code != 503 || !strings.Contains(body, `"account":"carol"`) || !strings.Contains(body, `"connect":"POST /-/connect"`) {
		t.Fatalf("carol: %d %s", code, body)
	}
	// No header: the default grant, which nobody connected.
	if code, _, _ := whoami(sc.URL, ""); code != 503 {
		t.Fatalf("default grant: %d", code)
	}

	// Logout revokes bob's grant at Panopto and deletes it.
	before := pan.Stats().GrantsRevoked
	resp, err := http.Post(sc.URL+"/-/logout?account=bob", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 || out["revoked"] != true {
		t.Fatalf("logout: %d %v", resp.StatusCode, out)
	}
	if pan.Stats().GrantsRevoked != before+1 {
		t.Fatal("logout did not revoke at Panopto")
	}
	if code, _, _ := whoami(sc.URL, "bob"); code != 503 {
		t.Fatalf("bob after logout: %d", code)
	}
	if code, user, _ := whoami(sc.URL, "alice"); code != 200 || user != "alice" {
		t.Fatalf("alice after bob's logout: %d %s", code, user)
	}
	// GET is not a logout.
	if c := statusCode(sc.URL + "/-/logout?account=alice"); c != 405 {
		t.Fatalf("GET /-/logout: %d", c)
	}
}

// TestAccountHeaderStrippedWhenOff: with accounts off, the header is
// stripped and ignored: the default grant is used.
func TestAccountHeaderStrippedWhenOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour, DefaultUser: "svc.ontrack"})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)
	logIn(t, sc.URL)
	code, user, _ := whoami(sc.URL, "mallory")
	if code != 200 || user != "svc.ontrack" {
		t.Fatalf("%d %q", code, user)
	}
}
