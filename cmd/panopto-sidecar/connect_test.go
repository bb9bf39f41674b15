package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

const connectReturnTo = "https://ontrack.example/panopto/done?unit=SIT101"

// connectLink asks base for a login link as OnTrack does (POST /-/connect).
// A link handed out is a secret: it joins the suite-wide scan.
func connectLink(t testing.TB, base, account, returnTo string) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"account": account, "return_to": returnTo})
	resp, err := http.Post(base+"/-/connect", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if link, ok := out["login_url"].(string); ok {
		u, _ := url.Parse(link)
		registerSecret(u.Query().Get("ticket"))
	}
	return resp.StatusCode, out
}

// mustLink returns a login link for account coming back to connectReturnTo.
func mustLink(t testing.TB, base, account string) string {
	t.Helper()
	code, out := connectLink(t, base, account, connectReturnTo)
	if code != http.StatusCreated {
		t.Fatalf("POST /-/connect %s: %d %v", account, code, out)
	}
	return out["login_url"].(string)
}

// followLink opens link in a fresh browser and follows redirects until the
// browser is sent back to OnTrack (ontrack.example, not followed) or a page
// is shown. It returns the status, that return URL, and the page.
func followLink(t testing.TB, link string) (int, string, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host == "ontrack.example" || len(via) > 15 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(link)
	if err != nil {
		t.Fatalf("follow link: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusFound {
		return resp.StatusCode, resp.Header.Get("Location"), ""
	}
	return resp.StatusCode, "", string(b)
}

// wantBack checks that a login sent the browser back to connectReturnTo with
// the outcome (reason "" = connected), OnTrack's own parameters kept.
func wantBack(t testing.TB, status int, loc, page, account, reason string) {
	t.Helper()
	if status != http.StatusFound || !strings.HasPrefix(loc, "https://ontrack.example/panopto/done?") {
		t.Fatalf("login ended with %d %q: %s", status, loc, page)
	}
	u, _ := url.Parse(loc)
	want := url.Values{"unit": {"SIT101"}, "account": {account}, "panopto": {"connected"}}
	if reason != "" {
		want.Set("panopto", "error")
		want.Set("reason", reason)
	}
	if got := u.Query().Encode(); got != want.Encode() {
		t.Fatalf("returned with %s, want %s", got, want.Encode())
	}
}

type accountState struct {
	Account     string `json:"account"`
	Connected   bool   `json:"connected"`
	PanoptoUser string `json:"panopto_user"`
	ExpiresAt   string `json:"expires_at"`
}

func accountOf(t testing.TB, base, account string) accountState {
	t.Helper()
	var st accountState
	if code := getJSON(t, base+"/-/accounts/"+account, &st); code != 200 {
		t.Fatalf("GET /-/accounts/%s: %d", account, code)
	}
	return st
}

// apiAs calls the API through the sidecar as account and returns the
// status and body.
func apiAs(t testing.TB, base, path, account string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("X-Panopto-User", account)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestConnectAgainstOIDCProvider: per-student connection against the real
// OAuth server (oidc-provider, testdata/oidc), its id_tokens naming the user
// who logged in (sub). Students' browsers use public_listen only.
func TestConnectAgainstOIDCProvider(t *testing.T) {
	node, peerDir := oidcPeerDir(t)
	t.Parallel()

	b := make([]byte, 16)
	rand.Read(b)
	secret := "oidc-client-secret-" + hex.EncodeToString(b)
	dir := t.TempDir()
	addr, pubAddr := holdAddr(t), holdAddr(t)
	peerPort := childPort(t)
	peer := startOIDCPeer(t, node, peerDir, peerPort, secret, "http://"+pubAddr+"/redirect", time.Hour)
	pub := "http://" + pubAddr

	cfg := fmt.Sprintf(`listen: {{LISTEN}}
public_listen: %s
public_url: %s
upstream: %s
token_store: {type: file, path: %s}
accounts:
  mode: login
  return_to: [https://ontrack.example/panopto/]
  ticket_ttl: 10s
  identity_claim: sub
log: {level: debug, format: json}
shutdown_grace: 10s
`, pubAddr, pub, peer.URL, filepath.Join(dir, "panopto-token.json"))
	sc := startSidecar(t, dir, addr, cfg, map[string]string{"PANOPTO_CLIENT_ID": testClientID, "PANOPTO_CLIENT_SECRET": secret})

	// A link for carol that nobody opens until it has expired.
	_, carol := connectLink(t, sc.URL, "carol", connectReturnTo)
	carolExpires, err := time.Parse(time.RFC3339Nano, fmt.Sprint(carol["expires_at"]))
	if err != nil {
		t.Fatalf("expires_at %v: %v", carol["expires_at"], err)
	}

	// alice connects and comes back to OnTrack.
	if st := accountOf(t, sc.URL, "alice"); st.Connected || st.ExpiresAt != "" {
		t.Fatalf("alice before: %+v", st)
	}
	link := mustLink(t, sc.URL, "alice")
	if !strings.HasPrefix(link, pub+"/-/login?ticket=") {
		t.Fatalf("login_url %q is not on public_url", link)
	}
	status, loc, page := followLink(t, link)
	wantBack(t, status, loc, page, "alice", "")
	if st := accountOf(t, sc.URL, "alice"); !st.Connected || st.PanoptoUser != "alice" || st.ExpiresAt == "" {
		t.Fatalf("alice after: %+v", st)
	}
	// The API (introspecting the bearer) sees alice's token.
	if code, body := apiAs(t, sc.URL, "/Panopto/api/v1/folders", "alice"); code != 200 || !strings.Contains(body, `"User":"alice"`) {
		t.Fatalf("alice's request: %d %s", code, body)
	}

	// The link works once.
	status, loc, page = followLink(t, link)
	wantBack(t, status, loc, page, "alice", "ticket_invalid")

	// Refused before anything starts: a forged ticket, a return_to off the
	// list, a per-account login without a ticket, the operator's login on
	// the public listener.
	logins := peer.stats(t).Logins
	ticket, _ := url.QueryUnescape(strings.TrimPrefix(mustLink(t, sc.URL, "alice"), pub+"/-/login?ticket="))
	payload, mac, _ := strings.Cut(ticket, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	forged := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"acct":"alice"`, `"acct":"bob"`, 1))) + "." + mac
	if status, loc, _ := followLink(t, pub+"/-/login?ticket="+url.QueryEscape(forged)); status != 403 || loc != "" {
		t.Fatalf("forged ticket: %d %q", status, loc)
	}
	if code, out := connectLink(t, sc.URL, "alice", "https://evil.example/panopto/"); code != 400 || out["error"] != "return_to_not_allowed" {
		t.Fatalf("return_to off the list: %d %v", code, out)
	}
	for _, u := range []string{sc.URL + "/-/login?account=bob", pub + "/-/login?account=bob", pub + "/-/login"} {
		if status, _, _ := followLink(t, u); status != 403 {
			t.Fatalf("%s: %d", u, status)
		}
	}
	var st struct {
		Pending int `json:"pending_logins"`
	}
	getJSON(t, sc.URL+"/-/status", &st)
	if st.Pending != 0 || peer.stats(t).Logins != logins {
		t.Fatalf("a refused login started one: %d pending, %d logins", st.Pending, peer.stats(t).Logins-logins)
	}

	// mallory logs in to Panopto on bob's link: identity_mismatch, and bob
	// stays unconnected.
	resp, err := http.Post(peer.URL+"/_next_login?user=mallory", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	status, loc, page = followLink(t, mustLink(t, sc.URL, "bob"))
	wantBack(t, status, loc, page, "bob", "identity_mismatch")
	if st := accountOf(t, sc.URL, "bob"); st.Connected || st.PanoptoUser != "" {
		t.Fatalf("bob after mallory: %+v", st)
	}
	if code, body := apiAs(t, sc.URL, "/Panopto/api/v1/folders", "bob"); code != 503 || !strings.Contains(body, `"connect":"POST /-/connect"`) {
		t.Fatalf("bob's request: %d %s", code, body)
	}
	// bob himself then connects.
	status, loc, page = followLink(t, mustLink(t, sc.URL, "bob"))
	wantBack(t, status, loc, page, "bob", "")
	if code, body := apiAs(t, sc.URL, "/Panopto/api/v1/folders", "bob"); code != 200 || !strings.Contains(body, `"User":"bob"`) {
		t.Fatalf("bob's request: %d %s", code, body)
	}

	// The public listener serves the login pages and health only.
	for _, p := range []string{"/Panopto/api/v1/folders", "/Panopto/PublicAPI/REST/sessionUpload", "/-/connect", "/-/status", "/metrics", "/-/accounts/alice", "/-/uploads", "/-/logout", "/"} {
		if code := statusCode(pub + p); code != 404 {
			t.Errorf("public %s: %d, want 404", p, code)
		}
	}
	if code := statusCode(pub + "/-/healthz"); code != 200 {
		t.Errorf("public healthz: %d", code)
	}

	// carol's link, opened too late.
	time.Sleep(time.Until(carolExpires) + 100*time.Millisecond)
	status, loc, page = followLink(t, carol["login_url"].(string))
	wantBack(t, status, loc, page, "carol", "ticket_invalid")

	// No token, id_token or ticket in the logs, status or metrics.
	statusText, metrics := fetch(t, sc.URL+"/-/status"), fetch(t, sc.URL+"/metrics")
	if err := sc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if code := statusCode(pub + "/-/healthz"); code != 0 {
		t.Errorf("public listener still answers after the stop: %d", code)
	}
	logs := sc.LogsAtStop()
	issued := peer.issued(t)
	for _, s := range issued {
		registerSecret(s)
	}
	assertNoSecrets(t, append(append(issued, secret, ticket), secretsIn(t, dir)...), map[string]string{"logs": logs, "status": statusText, "metrics": metrics})
	for _, want := range []string{`"event":"connect"`, `"event":"login","account":"alice","remote":`, `"result":"identity_mismatch"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no audit line with %s", want)
		}
	}
}

// TestConnectPublicListenerTLS: with tls.mode files the public listener
// serves the same certificate and asks browsers for none, while listen
// requires OnTrack's client certificate; a ticketed login works through it.
func TestConnectPublicListenerTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr, pubAddr := holdAddr(t), holdAddr(t)
	pub := "https://" + pubAddr
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{pub + "/redirect"}, AccessTTL: time.Hour})
	ca := testsupport.NewCert(t, "test CA", nil, true)
	server := testsupport.NewCert(t, "sidecar", ca, false)
	ontrack := testsupport.NewCert(t, "ontrack", ca, false)
	files := map[string][]byte{"ca.pem": ca.CertPEM, "cert.pem": server.CertPEM, "key.pem": server.KeyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := baseConfig(pan.URL, dir) + fmt.Sprintf(`public_listen: %s
tls: {mode: files, cert_file: %s, key_file: %s}
inbound: {client_ca_file: %s}
accounts: {mode: login, return_to: ["https://ontrack.example/panopto/"], identity_claim: preferred_username}
`, pubAddr, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem"))
	cfg = strings.NewReplacer("{{LISTEN}}", addr, "public_url: {{URL}}", "public_url: "+pub).Replace(cfg)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := func(cert *testsupport.Cert) *http.Client {
		tc := &tls.Config{RootCAs: roots}
		if cert != nil {
			tc.Certificates = []tls.Certificate{cert.TLSCert(t)}
		}
		tr := &http.Transport{TLSClientConfig: tc}
		t.Cleanup(tr.CloseIdleConnections)
		jar, _ := cookiejar.New(nil)
		return &http.Client{Transport: tr, Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == "ontrack.example" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	}
	onTrack, browser := client(ontrack), client(nil)
	sc := startTLSSidecar(t, cfgPath, onTrack, "https://"+addr, 10*time.Second)
	t.Cleanup(func() { registerOutput(t.Name()+" sidecar log", sc.Logs.String()) })

	resp, err := onTrack.Post(sc.URL+"/-/connect", "application/json", strings.NewReader(`{"account":"alice","return_to":"`+connectReturnTo+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("connect: %d %v", resp.StatusCode, out)
	}
	link := out["login_url"].(string)
	registerSecret(strings.TrimPrefix(link, pub+"/-/login?ticket="))
	if _, err := browser.Get(sc.URL + "/-/healthz"); err == nil {
		t.Fatal("listen accepted a browser without a client certificate")
	}
	resp, err = browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantBack(t, resp.StatusCode, resp.Header.Get("Location"), "", "alice", "")
	if resp.TLS == nil {
		t.Fatal("the public listener answered without TLS")
	}
	for path, want := range map[string]int{"/-/status": 404, "/-/accounts/alice": 404, "/-/healthz": 200} {
		resp, err := browser.Get(pub + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("public %s over TLS: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if code := statusCode("http://" + pubAddr + "/-/healthz"); code == 200 {
		t.Fatal("the public listener answered plain HTTP with tls.mode files")
	}
}

// TestConnectAcrossReplicas: two sidecars share one Vault token store; a
// link minted on one completes on the other, and is then used up on both.
func TestConnectAcrossReplicas(t *testing.T) {
	t.Parallel()
	vs := vaulttest.StartPersistent(t)
	kv := vs.Client(t).KVv2("secret")
	if _, err := kv.Put(context.Background(), "panopto/client", map[string]any{"client_id": testClientID, "client_secret": testClientSecret}); err != nil {
		t.Fatal(err)
	}
	addrs := []string{holdAddr(t), holdAddr(t)}
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addrs[0] + "/redirect", "http://" + addrs[1] + "/redirect"}, AccessTTL: time.Hour})
	env := map[string]string{"VAULT_TOKEN": vs.RootToken(), "PANOPTO_CLIENT_ID": "", "PANOPTO_CLIENT_SECRET": ""}
	registerSecret(vs.RootToken())
	var scs []*sidecarProc
	for _, a := range addrs {
		cfg := vaultYAML(pan.URL, vs.Addr(), 1) + "accounts: {mode: login, return_to: [\"https://ontrack.example/panopto/\"], identity_claim: sub}\n"
		scs = append(scs, startSidecar(t, t.TempDir(), a, cfg, env))
	}

	link := mustLink(t, scs[0].URL, "alice")
	onOther := strings.Replace(link, scs[0].URL, scs[1].URL, 1)
	status, loc, page := followLink(t, onOther)
	wantBack(t, status, loc, page, "alice", "")
	testsupport.WaitFor(t, 5*time.Second, "the first replica serves alice from the shared store", func() bool {
		code, body := apiAs(t, scs[0].URL, "/Panopto/api/v1/whoami", "alice")
		return code == 200 && strings.Contains(body, "alice")
	})
	if st := accountOf(t, scs[0].URL, "alice"); !st.Connected || st.PanoptoUser != "alice" {
		t.Fatalf("alice on the first replica: %+v", st)
	}
	// Used up across replicas: on the one that minted it, too.
	status, loc, page = followLink(t, link)
	wantBack(t, status, loc, page, "alice", "ticket_invalid")
	if n := pan.Stats().TokenCalls["authorization_code"]; n != 1 {
		t.Fatalf("%d code exchanges, want 1", n)
	}
}
