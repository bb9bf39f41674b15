package panoptofake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	st, b := e.do(http.MethodGet, "/Panopto/oauth2/.well-known/openid-configuration", "", nil)
	var d map[string]any
	if err := json.Unmarshal(b, &d); err != nil || st != http.StatusOK {
		t.Fatalf("status %d, %v", st, err)
	}
	for k, want := range map[string]string{
		"issuer":                 e.ts.URL + "/Panopto/oauth2",
		"authorization_endpoint": e.ts.URL + "/Panopto/oauth2/connect/authorize",
		"token_endpoint":         e.ts.URL + "/Panopto/oauth2/connect/token",
		"revocation_endpoint":    e.ts.URL + "/Panopto/oauth2/connect/revocation",
		"introspection_endpoint": e.ts.URL + "/Panopto/oauth2/connect/introspect",
	} {
		if d[k] != want {
			t.Errorf("%s = %v, want %s", k, d[k], want)
		}
	}
}

func TestAuthorizeErrors(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(url.Values)
		wantPage  bool   // HTML 400, no redirect
		wantError string // error= on the redirect
	}{
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope") }, true, ""},
		{"unregistered redirect", func(v url.Values) { v.Set("redirect_uri", "http://evil.example/redirect") }, true, ""},
		{"redirect prefix only", func(v url.Values) { v.Set("redirect_uri", testRedirect+"/x") }, true, ""},
		{"redirect case differs", func(v url.Values) { v.Set("redirect_uri", strings.ToUpper(testRedirect)) }, true, ""},
		{"missing redirect", func(v url.Values) { v.Del("redirect_uri") }, true, ""},
		{"token response type", func(v url.Values) { v.Set("response_type", "token") }, false, "unsupported_response_type"},
		{"no pkce", func(v url.Values) { v.Del("code_challenge") }, false, "invalid_request"},
		{"plain pkce", func(v url.Values) { v.Set("code_challenge_method", "plain") }, false, "invalid_request"},
		{"unknown scope", func(v url.Values) { v.Set("scope", "openid admin") }, false, "invalid_scope"},
		{"no scope", func(v url.Values) { v.Del("scope") }, false, "invalid_scope"},
		{"no state", func(v url.Values) { v.Del("state") }, false, "invalid_request"},
		{"no nonce", func(v url.Values) { v.Del("nonce") }, false, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			resp := e.authorize(authorizeQuery(tt.mod))
			if tt.wantPage {
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
					!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
					t.Fatalf("got %d Location=%q, want HTML 400", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want 302", resp.StatusCode)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if !strings.HasPrefix(loc.String(), testRedirect+"?") {
				t.Fatalf("redirected to %s", loc)
			}
			if got := loc.Query().Get("error"); got != tt.wantError {
				t.Errorf("error = %q, want %q", got, tt.wantError)
			}
			if loc.Query().Get("code") != "" {
				t.Error("an error redirect carries a code")
			}
		})
	}
}

func TestDenyNextAuthorize(t *testing.T) {
	e := newEnv(t, nil)
	e.s.DenyNextAuthorize()
	resp := e.authorize(authorizeQuery(nil))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st4te" {
		t.Fatalf("redirect %s, want access_denied with state", loc)
	}
	_ = e.code(nil) // only the next one is denied
}

func TestCodeExchange(t *testing.T) {
	good := url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {testRedirect}, "code_verifier": {testVerifier}}
	tests := []struct {
		name       string
		mod        func(url.Values)
		advance    time.Duration
		wantStatus int
		wantError  string
	}{
		{"ok", nil, 0, 200, ""},
		{"wrong verifier", func(v url.Values) { v.Set("code_verifier", strings.Repeat("x", 50)) }, 0, 400, "invalid_grant"},
		{"missing verifier", func(v url.Values) { v.Del("code_verifier") }, 0, 400, "invalid_grant"},
		{"verifier is the challenge", func(v url.Values) { v.Set("code_verifier", pkce(testVerifier)) }, 0, 400, "invalid_grant"},
		{"other redirect_uri", func(v url.Values) { v.Set("redirect_uri", "http://localhost:9127/other") }, 0, 400, "invalid_grant"},
		{"unknown code", func(v url.Values) { v.Set("code", "bogus") }, 0, 400, "invalid_grant"},
		{"expired code", nil, 61 * time.Second, 400, "invalid_grant"},
		{"code just in time", nil, 59 * time.Second, 200, ""},
		{"unknown grant type", func(v url.Values) { v.Set("grant_type", "client_credentials") }, 0, 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			form := cloneValues(good)
			form.Set("code", e.code(nil))
			if tt.mod != nil {
				tt.mod(form)
			}
			e.clock.Advance(tt.advance)
			tr := e.post("/Panopto/oauth2/connect/token", form, true)
			if tr.status != tt.wantStatus || tr.str("error") != tt.wantError {
				t.Fatalf("got %d %s, want %d %q", tr.status, tr.raw, tt.wantStatus, tt.wantError)
			}
			if tt.wantStatus == 200 {
				if tr.str("token_type") != "Bearer" || tr.body["expires_in"] != float64(3600) ||
					tr.str("access_token") == "" || tr.str("refresh_token") == "" || tr.str("scope") != "openid api offline_access" {
					t.Fatalf("token response %s", tr.raw)
				}
				if !e.s.TokenActive(tr.str("access_token")) {
					t.Fatal("issued token not active")
				}
			}
		})
	}
}

func TestCodeSingleUseRevokesGrant(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code(nil)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {testVerifier}}
	first := e.post("/Panopto/oauth2/connect/token", form, true)
	if first.status != 200 {
		t.Fatalf("first exchange: %d %s", first.status, first.raw)
	}
	second := e.post("/Panopto/oauth2/connect/token", form, true)
	if second.status != 400 || second.str("error") != "invalid_grant" {
		t.Fatalf("second exchange: %d %s", second.status, second.raw)
	}
	if e.s.TokenActive(first.str("access_token")) || e.s.RefreshTokenActive(first.str("refresh_token")) {
		t.Fatal("tokens from a replayed code still active")
	}
	if st := e.s.Stats(); st.CodeReuse != 1 || st.GrantsRevoked != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoRefreshTokenWithoutOfflineAccess(t *testing.T) {
	e := newEnv(t, nil)
	code := e.code(func(v url.Values) { v.Set("scope", "openid api") })
	tr := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {testVerifier}}, false)
	if tr.status != 200 || tr.str("access_token") == "" {
		t.Fatalf("%d %s", tr.status, tr.raw)
	}
	if _, ok := tr.body["refresh_token"]; ok {
		t.Fatal("refresh_token issued without offline_access")
	}
}

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t, nil)
	first := e.login()
	rt1 := first.str("refresh_token")

	second := e.refresh(rt1)
	if second.status != 200 {
		t.Fatalf("refresh: %d %s", second.status, second.raw)
	}
	rt2 := second.str("refresh_token")
	if rt2 == "" || rt2 == rt1 || second.str("access_token") == first.str("access_token") {
		t.Fatal("refresh did not rotate")
	}
	if e.s.RefreshTokenActive(rt1) || !e.s.RefreshTokenActive(rt2) {
		t.Fatal("old refresh token should be dead, new one alive")
	}
	if !e.s.TokenActive(first.str("access_token")) {
		t.Fatal("refresh should not end the earlier access token")
	}

	reuse := e.refresh(rt1)
	if reuse.status != 400 || reuse.str("error") != "invalid_grant" {
		t.Fatalf("reuse: %d %s", reuse.status, reuse.raw)
	}
	for _, tok := range []string{first.str("access_token"), second.str("access_token")} {
		if e.s.TokenActive(tok) {
			t.Fatal("access token survived refresh-token reuse")
		}
	}
	if next := e.refresh(rt2); next.status != 400 || next.str("error") != "invalid_grant" {
		t.Fatalf("newest refresh token survived reuse: %d %s", next.status, next.raw)
	}
	st := e.s.Stats()
	if st.Refreshes != 1 || st.RefreshReuse != 1 || st.GrantsRevoked != 1 || st.TokenCalls["refresh_token"] != 3 {
		t.Fatalf("stats %+v", st)
	}

	// Another login is a separate grant and unaffected.
	other := e.login()
	if e.refresh(other.str("refresh_token")).status != 200 {
		t.Fatal("an unrelated grant was revoked")
	}
	if unknown := e.refresh("nope"); unknown.status != 400 || unknown.str("error") != "invalid_grant" {
		t.Fatalf("unknown refresh token: %d", unknown.status)
	}
}

func TestRefreshScopeNarrowing(t *testing.T) {
	e := newEnv(t, nil)
	rt := e.login().str("refresh_token")
	wide := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"api email"}}, false)
	if wide.status != 400 || wide.str("error") != "invalid_scope" {
		t.Fatalf("widening scope: %d %s", wide.status, wide.raw)
	}
}

func TestClientAuth(t *testing.T) {
	form := func() url.Values {
		return url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}
	}
	tests := []struct {
		name   string
		form   url.Values
		basic  [2]string // raw id, secret put in Basic (already encoded); empty = none
		status int
	}{
		{"basic", form(), [2]string{url.QueryEscape(testClientID), url.QueryEscape(testSecret)}, 200},
		{"body", withCreds(form(), testClientID, testSecret), [2]string{}, 200},
		{"both agree", withCreds(form(), testClientID, testSecret), [2]string{url.QueryEscape(testClientID), url.QueryEscape(testSecret)}, 200},
		{"basic plus body client_id", withCreds(form(), testClientID, ""), [2]string{url.QueryEscape(testClientID), url.QueryEscape(testSecret)}, 200},
		{"both disagree", withCreds(form(), testClientID, "other"), [2]string{url.QueryEscape(testClientID), url.QueryEscape(testSecret)}, 401},
		{"basic wrong secret", form(), [2]string{url.QueryEscape(testClientID), "wrong"}, 401},
		{"body wrong secret", withCreds(form(), testClientID, "wrong"), [2]string{}, 401},
		{"body wrong client", withCreds(form(), "other", testSecret), [2]string{}, 401},
		{"none", form(), [2]string{}, 401},
		{"body id only", withCreds(form(), testClientID, ""), [2]string{}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tr := e.postRaw("/Panopto/oauth2/connect/token", tt.form, func(r *http.Request) {
				if tt.basic[0] != "" {
					r.SetBasicAuth(tt.basic[0], tt.basic[1])
				}
			})
			if tr.status != tt.status {
				t.Fatalf("status %d (%s), want %d", tr.status, tr.raw, tt.status)
			}
			if tt.status == 401 {
				if tr.str("error") != "invalid_client" || e.s.Stats().InvalidClient != 1 {
					t.Fatalf("body %s, stats %+v", tr.raw, e.s.Stats())
				}
			}
		})
	}
}

func withCreds(v url.Values, id, secret string) url.Values {
	if id != "" {
		v.Set("client_id", id)
	}
	if secret != "" {
		v.Set("client_secret", secret)
	}
	return v
}

func TestRotateClientSecret(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	e.s.RotateClientSecret("new-secret")
	if tr := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}, true); tr.status != 401 {
		t.Fatalf("old secret: %d", tr.status)
	}
	tr := e.postRaw("/Panopto/oauth2/connect/token", url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"},
		"client_id": {testClientID}, "client_secret": {"new-secret"},
	}, nil)
	if tr.status != 200 {
		t.Fatalf("new secret: %d %s", tr.status, tr.raw)
	}
	if !e.s.TokenActive(tok) {
		t.Fatal("rotation ended an issued token")
	}
}

func TestPasswordGrants(t *testing.T) {
	idpUser := `NetID\jsmith`
	tests := []struct {
		name, user, pass string
		scope            string
		status           int
		wantRefresh      bool
	}{
		{"user", "alice", "wonderland", "openid api offline_access", 200, true},
		{"user without offline_access", "alice", "wonderland", "openid api", 200, false},
		{"user default scope", "alice", "wonderland", "", 200, true},
		{"wrong password", "alice", "nope", "", 400, false},
		{"unknown user", "bob", "wonderland", "", 400, false},
		{"idp", idpUser, idpPassword(idpUser, "0F5B6C2E-APP-KEY"), "openid api offline_access", 200, true},
		{"idp case-insensitive", `netid\JSmith`, idpPassword(`netid\JSmith`, "0f5b6c2e-app-key"), "api", 200, false},
		{"idp any user", `NetID\someone-else`, idpPassword(`NetID\someone-else`, "0F5B6C2E-APP-KEY"), "api", 200, false},
		{"idp wrong key", idpUser, idpPassword(idpUser, "other-key"), "", 400, false},
		{"idp password for another user", `NetID\mallory`, idpPassword(idpUser, "0F5B6C2E-APP-KEY"), "", 400, false},
		{"idp unknown provider", `Other\jsmith`, idpPassword(`Other\jsmith`, "0F5B6C2E-APP-KEY"), "", 400, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			form := url.Values{"grant_type": {"password"}, "username": {tt.user}, "password": {tt.pass}}
			if tt.scope != "" {
				form.Set("scope", tt.scope)
			}
			tr := e.post("/Panopto/oauth2/connect/token", form, false)
			if tr.status != tt.status {
				t.Fatalf("status %d %s, want %d", tr.status, tr.raw, tt.status)
			}
			if tt.status != 200 {
				if tr.str("error") != "invalid_grant" {
					t.Fatalf("error %q", tr.str("error"))
				}
				return
			}
			if _, ok := tr.body["refresh_token"]; ok != tt.wantRefresh {
				t.Fatalf("refresh_token present=%v, want %v", ok, tt.wantRefresh)
			}
			st, b := e.do(http.MethodGet, "/Panopto/api/v1/whoami", tr.str("access_token"), nil)
			var who map[string]any
			_ = json.Unmarshal(b, &who)
			if st != 200 || who["User"] != tt.user || who["GrantType"] != "password" {
				t.Fatalf("whoami %d %s", st, b)
			}
		})
	}
}

// The formula matches Panopto's auth-id-provider sample; this pins one value
// computed independently (python: b64encode(sha256(b"netid\\jsmith|abc").digest())).
func TestIdentityProviderPasswordFormula(t *testing.T) {
	got := IdentityProviderPassword(`NetID\JSmith`, "ABC")
	want := "x/Oncide+Kz7QpfgFarxNyGzMZIcFhscuoawWyjTjmg="
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestAccessTokenExpiry(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AccessTTL = 10 * time.Minute })
	tok := e.login().str("access_token")
	if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/folders", tok, nil); st != 200 {
		t.Fatalf("fresh token: %d", st)
	}
	e.clock.Advance(10*time.Minute - time.Second)
	if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/folders", tok, nil); st != 200 {
		t.Fatalf("token before expiry: %d", st)
	}
	e.clock.Advance(time.Second)
	st, _ := e.do(http.MethodGet, "/Panopto/api/v1/folders", tok, nil)
	if st != 401 || e.s.TokenActive(tok) {
		t.Fatalf("expired token: %d", st)
	}
	if e.s.Stats().Unauthorized != 1 {
		t.Fatalf("stats %+v", e.s.Stats())
	}
}

func TestExpireAllAccessTokens(t *testing.T) {
	e := newEnv(t, nil)
	tr := e.login()
	e.s.ExpireAllAccessTokens()
	if e.s.TokenActive(tr.str("access_token")) {
		t.Fatal("token still active")
	}
	if r := e.refresh(tr.str("refresh_token")); r.status != 200 || !e.s.TokenActive(r.str("access_token")) {
		t.Fatalf("refresh after expiry: %d", r.status)
	}
}

func TestRevocationAndIntrospection(t *testing.T) {
	e := newEnv(t, nil)
	tr := e.login()
	at, rt := tr.str("access_token"), tr.str("refresh_token")
	intro := func(tok string) bool {
		r := e.post("/Panopto/oauth2/connect/introspect", url.Values{"token": {tok}}, true)
		if r.status != 200 {
			t.Fatalf("introspect: %d", r.status)
		}
		return r.body["active"] == true
	}
	if !intro(at) || !intro(rt) || intro("bogus") {
		t.Fatal("introspection before revocation")
	}
	if r := e.postRaw("/Panopto/oauth2/connect/introspect", url.Values{"token": {at}}, nil); r.status != 401 {
		t.Fatalf("unauthenticated introspect: %d", r.status)
	}
	if r := e.post("/Panopto/oauth2/connect/revocation", url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}, false); r.status != 200 {
		t.Fatalf("revoke: %d", r.status)
	}
	if intro(at) || intro(rt) {
		t.Fatal("revoking the refresh token must end the grant")
	}
	if r := e.post("/Panopto/oauth2/connect/revocation", url.Values{"token": {"unknown"}}, false); r.status != 200 {
		t.Fatalf("revoke unknown: %d", r.status)
	}
	if e.s.Stats().GrantsRevoked != 1 {
		t.Fatalf("stats %+v", e.s.Stats())
	}
}

func TestTokenFaults(t *testing.T) {
	passwordForm := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}
	tests := []struct {
		name  string
		fault Fault
		check func(t *testing.T, resp *http.Response, body []byte, err error)
	}{
		{"500", FaultStatus500, func(t *testing.T, resp *http.Response, _ []byte, err error) {
			if err != nil || resp.StatusCode != 500 {
				t.Fatalf("%v %v", resp, err)
			}
		}},
		{"429", FaultStatus(429), func(t *testing.T, resp *http.Response, _ []byte, err error) {
			if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%v %v", resp, err)
			}
		}},
		{"garbage", FaultGarbage, func(t *testing.T, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != 200 || json.Valid(body) {
				t.Fatalf("%v %q %v", resp, body, err)
			}
		}},
		{"empty 200", FaultEmpty200, func(t *testing.T, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != 200 || len(body) != 0 {
				t.Fatalf("%v %q %v", resp, body, err)
			}
		}},
		{"invalid client", FaultInvalidClient, func(t *testing.T, resp *http.Response, body []byte, err error) {
			if err != nil || resp.StatusCode != 401 || !bytes.Contains(body, []byte("invalid_client")) {
				t.Fatalf("%v %q %v", resp, body, err)
			}
		}},
		{"reset", FaultReset, func(t *testing.T, _ *http.Response, _ []byte, err error) {
			if err == nil {
				t.Fatal("want a transport error")
			}
		}},
		{"timeout", FaultTimeout(time.Hour), func(t *testing.T, _ *http.Response, _ []byte, err error) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("want a timeout, got %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.s.InjectTokenFaults(tt.fault)
			form := withCreds(cloneValues(passwordForm), testClientID, testSecret)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.ts.URL+"/Panopto/oauth2/connect/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			tr := &http.Transport{DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			var body []byte
			if err == nil {
				body, err = readAll(resp)
			}
			tt.check(t, resp, body, err)
			// The fault is consumed: the next call succeeds.
			if next := e.post("/Panopto/oauth2/connect/token", passwordForm, true); next.status != 200 {
				t.Fatalf("call after fault: %d %s", next.status, next.raw)
			}
			if st := e.s.Stats(); st.FaultsServed != 1 || st.TokenCalls["password"] != 2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestFaultTimeoutShortDelayServes(t *testing.T) {
	e := newEnv(t, nil)
	e.s.InjectTokenFaults(FaultTimeout(time.Millisecond))
	if tr := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}, true); tr.status != 200 {
		t.Fatalf("%d %s", tr.status, tr.raw)
	}
}

func TestTokenEndpointStrictness(t *testing.T) {
	e := newEnv(t, nil)
	// JSON instead of a form.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/Panopto/oauth2/connect/token", strings.NewReader(`{"grant_type":"password"}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(testClientID, testSecret)
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("json body: %d", resp.StatusCode)
	}
	// GET is not allowed.
	if st, _ := e.do(http.MethodGet, "/Panopto/oauth2/connect/token", "", nil); st != http.StatusMethodNotAllowed {
		t.Fatalf("GET token: %d", st)
	}
}

func TestLogsCarryNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	e := newEnv(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	tr := e.login()
	r := e.refresh(tr.str("refresh_token"))
	e.do(http.MethodGet, "/Panopto/api/v1/folders", r.str("access_token"), nil)
	if buf.Len() == 0 {
		t.Fatal("nothing logged")
	}
	for _, secret := range []string{testSecret, tr.str("access_token"), tr.str("refresh_token"), r.str("access_token"), r.str("refresh_token")} {
		if strings.Contains(buf.String(), secret) {
			t.Fatal("a secret reached the log")
		}
	}
}

func readAll(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(resp.Body)
	return b.Bytes(), err
}

// TestConcurrentRefreshSameToken shows what a sidecar without single flight
// gets: one refresh wins, every other use is reuse and the grant dies.
func TestConcurrentRefreshSameToken(t *testing.T) {
	e := newEnv(t, nil)
	rt := e.login().str("refresh_token")
	const n = 50
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.c.PostForm(e.ts.URL+"/Panopto/oauth2/connect/token", url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {rt},
				"client_id": {testClientID}, "client_secret": {testSecret},
			})
			if err != nil {
				statuses <- 0
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	ok := 0
	for st := range statuses {
		if st == 200 {
			ok++
		}
	}
	st := e.s.Stats()
	if ok != 1 || st.Refreshes != 1 || st.RefreshReuse != n-1 || st.GrantsRevoked != 1 {
		t.Fatalf("%d succeeded, stats %+v", ok, st)
	}
}
