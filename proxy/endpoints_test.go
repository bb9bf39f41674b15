package proxy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}})
	if code, _, body := e.call(http.MethodGet, "/-/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz answered %d: %s", code, body)
	}
	code, _, body := e.call(http.MethodGet, "/-/ready", nil)
	m := jsonBody(t, body)
	if code != http.StatusServiceUnavailable || m["reason"] == "" || m["reason"] == nil || m["login_url"] != e.srv.URL+"/-/login" {
		t.Fatalf("ready before login: %d %v", code, m)
	}
	e.login()
	if code, _, body := e.call(http.MethodGet, "/-/ready", nil); code != http.StatusOK {
		t.Fatalf("ready after login answered %d: %s", code, body)
	}
	// An expired token that cannot be refreshed is not ready.
	e.fake.RotateClientSecret("another-secret")
	e.clk.Advance(2 * time.Hour)
	code, _, body = e.call(http.MethodGet, "/-/ready", nil)
	if m := jsonBody(t, body); code != http.StatusServiceUnavailable || m["reason"] == "" {
		t.Fatalf("ready past expiry: %d %v", code, m)
	}
}

func TestStatusAndMetrics(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up})
	code, _, body := e.call(http.MethodGet, "/-/status", nil)
	if st := jsonBody(t, body); code != http.StatusOK || st["connected"] != false {
		t.Fatalf("status before login: %d %v", code, st)
	}
	e.login()
	for range 3 {
		e.call(http.MethodGet, "/Panopto/api/v1/folders", nil)
	}
	e.call(http.MethodGet, "/nowhere", nil)

	code, _, body = e.call(http.MethodGet, "/-/status", nil)
	st := jsonBody(t, body)
	if code != http.StatusOK || st["connected"] != true {
		t.Fatalf("status after login: %d %v", code, st)
	}
	data, _ := os.ReadFile(e.path)
	var rec struct {
		ExpiresAt  time.Time `json:"expires_at"`
		ObtainedAt time.Time `json:"obtained_at"`
	}
	_ = json.Unmarshal(data, &rec)
	for k, want := range map[string]time.Time{"expires_at": rec.ExpiresAt, "obtained_at": rec.ObtainedAt} {
		got, err := time.Parse(time.RFC3339Nano, fmt.Sprint(st[k]))
		if err != nil || !got.Equal(want) || want.IsZero() {
			t.Errorf("status %s = %v, store has %v", k, st[k], want)
		}
	}
	if _, ok := st["refreshes"].(float64); !ok {
		t.Errorf("status has no refreshes count: %v", st)
	}
	access, refresh := e.storedTokens()
	for _, s := range []string{access, refresh, testClientSecret} {
		if strings.Contains(string(body), s) {
			t.Fatalf("/-/status reveals a secret: %s", body)
		}
	}

	m := e.scrape()
	if v := metric(m, "panopto_sidecar_requests_total", "route", "/Panopto/api/", "code", "200"); v != 3 {
		t.Errorf("requests_total{route=/Panopto/api/,code=200} = %v, want 3", v)
	}
	if v := metric(m, "panopto_sidecar_requests_total", "route", "none", "code", "404"); v != 1 {
		t.Errorf("requests_total{route=none,code=404} = %v, want 1", v)
	}
	if v := metric(m, "panopto_sidecar_token_expiry_timestamp_seconds"); v != float64(rec.ExpiresAt.Unix()) {
		t.Errorf("token_expiry_timestamp_seconds = %v, want %d", v, rec.ExpiresAt.Unix())
	}
	for _, s := range []string{access, refresh, testClientSecret} {
		if strings.Contains(m, s) {
			t.Fatal("/metrics reveals a secret")
		}
	}
}

func TestLoginRedirect(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}})
	resp, err := browser().Get(e.srv.URL + "/-/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login answered %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), e.ep.AuthURL+"?") {
		t.Fatalf("login redirects to %q", resp.Header.Get("Location"))
	}
	q := loc.Query()
	want := map[string]string{
		"client_id": testClientID, "response_type": "code", "redirect_uri": e.srv.URL + "/redirect",
		"scope": "openid api offline_access", "code_challenge_method": "S256",
	}
	for k, v := range want {
		if q.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, q.Get(k), v)
		}
	}
	for _, k := range []string{"state", "nonce"} {
		if len(q.Get(k)) < 16 {
			t.Errorf("%s = %q: missing or short", k, q.Get(k))
		}
	}
	if c, err := base64.RawURLEncoding.DecodeString(q.Get("code_challenge")); err != nil || len(c) != 32 {
		t.Errorf("code_challenge %q is not a base64url SHA-256", q.Get("code_challenge"))
	}
	if strings.Contains(loc.RawQuery, testClientSecret) {
		t.Error("the authorize URL carries the client secret")
	}
	var bound bool
	for _, c := range resp.Cookies() {
		bound = bound || (c.Name == bindingCookie && c.HttpOnly && c.Value != "")
	}
	if !bound {
		t.Error("no HttpOnly browser-binding cookie was set")
	}
}

func TestCallbackRefusals(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}})
	for _, target := range []string{
		"/redirect?code=abc&state=not-a-state",
		"/redirect?code=abc",
		"/redirect?state=abc",
		"/redirect",
	} {
		code, hdr, body := e.call(http.MethodGet, target, nil)
		if code != http.StatusBadRequest || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "Not connected") {
			t.Errorf("%s answered %d %q: %s", target, code, hdr.Get("Content-Type"), body)
		}
	}
	// The user denies access at Panopto: a 400 page, nothing stored.
	e.fake.DenyNextAuthorize()
	code, body := e.loginPage()
	if code != http.StatusBadRequest || !strings.Contains(body, "denied") {
		t.Fatalf("denied login ended with %d: %s", code, body)
	}
	if ok, _ := e.m.Ready(); ok {
		t.Fatal("a denied login connected the sidecar")
	}
	if _, err := os.Stat(e.path); err == nil {
		t.Fatal("a denied login wrote the token store")
	}
	// A state is single-use: replaying a successful callback fails.
	c := browser()
	resp, err := c.Get(e.srv.URL + "/-/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	for i, want := range []int{http.StatusOK, http.StatusBadRequest} {
		resp, err := c.Get(callback)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("callback use %d answered %d: %s", i+1, resp.StatusCode, b)
		}
	}
}

func TestSharedSecret(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true, secret: "inbound-shared-secret"})
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/-/healthz", 200},
		{"/-/ready", 200},
		{"/-/status", 401},
		{"/metrics", 401},
		{"/-/login", 401},
		{"/Panopto/api/v1/folders", 401},
		{"/Panopto/Upload/a/b.mp4", 401},
	} {
		for _, hdr := range [][]string{nil, {secretHeader, "wrong"}} {
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+tc.path, nil)
			for i := 0; i+1 < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := e.srv.Client().Do(req) // not e.do: no secret added
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s with %v answered %d, want %d", tc.path, hdr, resp.StatusCode, tc.want)
			}
		}
	}
	if n := up.n.Load(); n != 0 {
		t.Fatalf("%d requests without the shared secret reached the upstream", n)
	}
	// With the secret the request passes, and the secret stays here.
	if code, _, body := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil); code != http.StatusOK {
		t.Fatalf("with the secret: %d %s", code, body)
	}
	if v, ok := up.last(t).Header[http.CanonicalHeaderKey(secretHeader)]; ok {
		t.Fatalf("the shared secret was forwarded: %q", v)
	}
}

// TestNoSecretsAnywhere follows a login, proxied requests, a refresh ahead
// of expiry, a refresh forced by a refused bearer, an upstream error and a
// logout, with every log line captured at debug level, and checks that no
// token or client secret appears in the logs, /-/status or /metrics.
func TestNoSecretsAnywhere(t *testing.T) {
	e := newEnv(t, envConfig{retry: 1 << 20})
	var secrets []string
	collect := func() {
		a, r := e.storedTokens()
		secrets = append(secrets, a, r)
	}
	e.login()
	collect()
	for range 2 {
		if code, _, body := e.call(http.MethodGet, "/Panopto/api/v1/whoami", nil, "Authorization", "Bearer client-supplied"); code != 200 {
			t.Fatalf("whoami: %d %s", code, body)
		}
	}
	// Past expiry: the next request refreshes.
	e.clk.Advance(61 * time.Minute)
	if code, _, body := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil); code != 200 {
		t.Fatalf("after expiry: %d %s", code, body)
	}
	collect()
	// Revoked at Panopto: a 401 forces a refresh and a retry.
	e.fake.ExpireAllAccessTokens()
	if code, _, body := e.call(http.MethodPost, "/Panopto/api/v1/echo", strings.NewReader("hello")); code != 200 || string(body) != "hello" {
		t.Fatalf("after revocation: %d %s", code, body)
	}
	collect()
	if e.fake.Stats().Refreshes != 2 {
		t.Fatalf("stand-in saw %d refreshes, want 2", e.fake.Stats().Refreshes)
	}
	// A failing token endpoint and a failing upstream are logged.
	e.fake.RotateClientSecret("rotated-client-secret")
	e.clk.Advance(2 * time.Hour)
	if code, _, _ := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("with a refused client: %d", code)
	}
	_, _, statusBody := e.call(http.MethodGet, "/-/status", nil)
	metrics := e.scrape()
	if code, _, body := e.call(http.MethodPost, "/-/logout", nil, "Content-Type", "application/json"); code != http.StatusOK {
		t.Fatalf("logout: %d %s", code, body)
	}
	secrets = append(secrets, testClientSecret, "rotated-client-secret", base64.StdEncoding.EncodeToString([]byte(testClientID+":"+testClientSecret)))

	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, "connected to Panopto") {
		t.Fatalf("the logs were not captured: %s", logs)
	}
	for _, s := range secrets {
		for where, text := range map[string]string{"logs": logs, "/-/status": string(statusBody), "/metrics": metrics} {
			if strings.Contains(text, s) {
				t.Errorf("%s reveal a secret (%d chars)", where, len(s))
			}
		}
	}
	if strings.Contains(logs, "Bearer") {
		t.Error("the logs mention a bearer header")
	}
}
