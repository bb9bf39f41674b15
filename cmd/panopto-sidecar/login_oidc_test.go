package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRefusedLoginKeepsVictimsGrant runs the attack of a refused login
// against the real OAuth server (oidc-provider, which revokes a whole grant
// when one of its refresh tokens is revoked, as RFC 7009 allows): bob
// connects his account in his browser and stays signed in to Panopto;
// mallory gets a link for her own account and has bob open it. Panopto
// signs bob in again under the grant his browser already holds, the
// sidecar refuses the login (identity_mismatch), and bob's stored grant
// must still work: nothing was revoked.
func TestRefusedLoginKeepsVictimsGrant(t *testing.T) {
	node, peerDir := oidcPeerDir(t)
	t.Parallel()

	b := make([]byte, 16)
	rand.Read(b)
	secret := "oidc-client-secret-" + hex.EncodeToString(b)
	dir := t.TempDir()
	addr := holdAddr(t)
	peerPort := childPort(t)
	peer := startOIDCPeer(t, node, peerDir, peerPort, secret, "http://"+addr+"/redirect", time.Hour)

	cfg := fmt.Sprintf(`listen: {{LISTEN}}
public_url: {{URL}}
upstream: %s
token_store: {type: file, path: %s}
accounts:
  mode: login
  return_to: [https://ontrack.example/panopto/]
  identity_claim: sub
log: {level: debug, format: json}
shutdown_grace: 10s
`, peer.URL, filepath.Join(dir, "panopto-token.json"))
	sc := startSidecar(t, dir, addr, cfg, map[string]string{"PANOPTO_CLIENT_ID": testClientID, "PANOPTO_CLIENT_SECRET": secret})

	// bob's browser: it keeps its Panopto session between links.
	jar, _ := cookiejar.New(nil)
	bobsBrowser := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == "ontrack.example" || len(via) > 15 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	open := func(link string) (int, string, string) {
		t.Helper()
		resp, err := bobsBrowser.Get(link)
		if err != nil {
			t.Fatalf("open link: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location"), string(body)
	}

	status, loc, page := open(mustLink(t, sc.URL, "bob"))
	wantBack(t, status, loc, page, "bob", "")
	if code, body := apiAs(t, sc.URL, "/Panopto/api/v1/folders", "bob"); code != 200 || !strings.Contains(body, `"User":"bob"`) {
		t.Fatalf("bob's request: %d %s", code, body)
	}
	before := peer.stats(t)

	// mallory's link, opened in bob's browser.
	status, loc, page = open(mustLink(t, sc.URL, "mallory"))
	wantBack(t, status, loc, page, "mallory", "identity_mismatch")
	after := peer.stats(t)
	if after.TokenCalls["authorization_code"] != before.TokenCalls["authorization_code"]+1 || after.Logins != before.Logins {
		t.Fatalf("the attack did not run as intended (bob signed in again under his session): %+v then %+v", before, after)
	}
	if after.GrantsRevoked != 0 {
		t.Errorf("the refused login revoked %d grants at Panopto", after.GrantsRevoked)
	}
	if st := accountOf(t, sc.URL, "mallory"); st.Connected {
		t.Errorf("mallory connected to bob's Panopto account: %+v", st)
	}
	// bob's stored grant still works at Panopto: his bearer, and a refresh.
	if code, body := apiAs(t, sc.URL, "/Panopto/api/v1/folders", "bob"); code != 200 || !strings.Contains(body, `"User":"bob"`) {
		t.Fatalf("bob's request after the refused login: %d %s", code, body)
	}
	logs := sc.LogsAtStop()
	for _, want := range []string{`"event":"login","account":"mallory"`, `"result":"identity_mismatch","panopto_sub":"bob"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no audit line with %s", want)
		}
	}
	for _, s := range peer.issued(t) {
		registerSecret(s)
	}
}
