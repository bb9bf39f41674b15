package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

const testReturnTo = "https://ontrack.example/panopto/done?unit=SIT101"

// connectEnv is a sidecar in accounts.mode login with a public listener:
// OnTrack calls main, students' browsers reach public (public_url).
type connectEnv struct {
	t      *testing.T
	clk    *testsupport.Clock
	fake   *panoptofake.Server
	main   *httptest.Server
	public *httptest.Server
	h      *Handler
	pool   *token.Pool
	flow   *login.LoginFlow
	logs   *testsupport.SyncBuffer
	dir    string
	// revokes counts the handler's calls to revoke a grant at Panopto.
	revokes atomic.Int64
}

func newConnectEnv(t *testing.T, mode token.AccountsMode, co ConnectOptions) *connectEnv {
	t.Helper()
	return newConnectEnvAt(t, mode, co, "")
}

// newConnectEnvAt is newConnectEnv with public_url under a path prefix
// (e.g. /panopto), as behind a reverse proxy that passes the path as is.
func newConnectEnvAt(t *testing.T, mode token.AccountsMode, co ConnectOptions, prefix string) *connectEnv {
	t.Helper()
	clk := testsupport.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	e := &connectEnv{t: t, clk: clk, logs: &testsupport.SyncBuffer{}, dir: t.TempDir()}
	e.public = httptest.NewUnstartedServer(nil)
	e.main = httptest.NewUnstartedServer(nil)
	publicURL := "http://" + e.public.Listener.Addr().String() + prefix

	e.fake = panoptofake.New(panoptofake.Options{
		ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{publicURL + "/redirect"}, Now: clk.Now, DefaultUser: "lecturer",
	})
	fakeSrv := httptest.NewServer(e.fake)
	t.Cleanup(fakeSrv.Close)
	up, _ := url.Parse(fakeSrv.URL)
	ep := token.Endpoint{
		AuthURL:       fakeSrv.URL + "/Panopto/oauth2/connect/authorize",
		TokenURL:      fakeSrv.URL + "/Panopto/oauth2/connect/token",
		RevocationURL: fakeSrv.URL + "/Panopto/oauth2/connect/revocation",
		RedirectURL:   publicURL + "/redirect",
		Scopes:        []string{"openid", "api", "offline_access"},
		ClientAuth:    "basic",
		RefreshBefore: 5 * time.Minute,
		Timeout:       5 * time.Second,
		LoginURL:      publicURL + "/-/login",
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	creds := token.StaticCredentials{ID: testClientID, Secret: testClientSecret, Source: "env"}
	store := token.NewFileStore(filepath.Join(e.dir, "token.json"))
	e.pool = token.NewPool(token.PoolOptions{
		Store: store, Credentials: creds,
		HTTPClient: fakeSrv.Client(), Logger: logger.With("component", "oauth"), Now: clk.Now,
		Mode: mode, PoolSettings: token.PoolSettings{Endpoint: ep},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e.pool.Load(ctx)
	go e.pool.Run(ctx)
	e.flow = login.NewLoginFlow(0, clk.Now)
	if co.ReturnTo == nil {
		co.ReturnTo = []string{"https://ontrack.example/panopto/"}
	}
	e.h = New(Deps{
		Accounts:    e.pool,
		Credentials: creds,
		Flow:        e.flow,
		Logger:      logger.With("component", "proxy"),
		Now:         clk.Now,
		Revoke: func(ctx context.Context, g *token.Grant) error {
			e.revokes.Add(1)
			return ep.Revoke(ctx, fakeSrv.Client(), token.ClientCredentials{ID: testClientID, Secret: testClientSecret}, g.RefreshToken, "refresh_token")
		},
		Connect: ConnectDeps{Store: store, HTTPClient: fakeSrv.Client()},
	}, Options{
		Upstream: up, PublicURL: publicURL, Routes: defaultRoutes(), Endpoint: ep,
		AccountsMode: mode, AccountsHeader: "X-Panopto-User", RequireBrowserBinding: true,
		Connect: co, PublicListen: true,
	})
	e.main.Config.Handler = e.h
	e.public.Config.Handler = e.h.Public()
	e.main.Start()
	e.public.Start()
	t.Cleanup(e.main.Close)
	t.Cleanup(e.public.Close)
	return e
}

// connect asks for a login link as OnTrack does and returns the status and
// the decoded answer.
func (e *connectEnv) connect(account, returnTo string) (int, map[string]any) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"account": account, "return_to": returnTo})
	resp, err := http.Post(e.main.URL+"/-/connect", "application/json", strings.NewReader(string(body)))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// link returns a login link for account that comes back to testReturnTo.
func (e *connectEnv) link(account string) string {
	e.t.Helper()
	code, out := e.connect(account, testReturnTo)
	if code != http.StatusCreated {
		e.t.Fatalf("connect %s: %d %v", account, code, out)
	}
	return out["login_url"].(string)
}

// follow drives a browser from target until a page that is not a redirect
// within the sidecar and the stand-in, or a redirect elsewhere (return_to).
// rewrite may change the authorize request (a student logging in as another
// Panopto user). It returns the final status, the Location leaving the
// test's servers (if any), the body and the hosts visited.
func (e *connectEnv) follow(target string, rewrite func(*url.URL)) (int, string, string) {
	e.t.Helper()
	c := browser()
	for hop := 0; hop < 8; hop++ {
		u, _ := url.Parse(target)
		if rewrite != nil && strings.HasSuffix(u.Path, "/connect/authorize") {
			rewrite(u)
			target = u.String()
		}
		resp, err := c.Get(target)
		if err != nil {
			e.t.Fatalf("hop %d: %v", hop, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return resp.StatusCode, "", string(b)
		}
		next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if next.Host == "ontrack.example" {
			return resp.StatusCode, next.String(), ""
		}
		target = next.String()
	}
	e.t.Fatal("too many redirects")
	return 0, "", ""
}

// account reads GET /-/accounts/{name}.
func (e *connectEnv) account(name string) (int, accountView) {
	e.t.Helper()
	resp, err := http.Get(e.main.URL + "/-/accounts/" + name)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v accountView
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// audits returns the audit lines logged so far.
func (e *connectEnv) audits() []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "audit" {
			out = append(out, m)
		}
	}
	return out
}

func wantReturn(t *testing.T, loc, account, reason string) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil || !strings.HasPrefix(loc, "https://ontrack.example/panopto/done?") {
		t.Fatalf("returned to %q", loc)
	}
	q := u.Query()
	want := url.Values{"unit": {"SIT101"}, "account": {account}, "panopto": {"connected"}}
	if reason != "" {
		want.Set("panopto", "error")
		want.Set("reason", reason)
	}
	if q.Encode() != want.Encode() {
		t.Fatalf("returned with %q, want %q", q.Encode(), want.Encode())
	}
}

// TestConnectTicketLogin: OnTrack mints a link for alice; her browser logs
// in through the public listener and comes back to return_to; alice's
// requests carry alice's token; the link works once; /-/accounts shows her
// Panopto user; DELETE disconnects and revokes. Each event is one audit line
// without the ticket or a token.
func TestConnectTicketLogin(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "preferred_username"})
	e.fake.SetProfile("alice", panoptofake.Profile{Name: "Alice Example", Email: "alice@example.edu"})

	if _, v := e.account("alice"); v.Connected || v.PanoptoUser != "" {
		t.Fatalf("before: %+v", v)
	}
	// Unconnected in login mode: where to connect, not a login URL.
	code, _, body := (&testEnv{t: t, srv: e.main}).call(http.MethodGet, "/Panopto/api/v1/whoami", nil, "X-Panopto-User", "alice")
	if code != 503 || !strings.Contains(string(body), `"connect":"POST /-/connect"`) || !strings.Contains(string(body), `"account":"alice"`) || strings.Contains(string(body), "login_url") {
		t.Fatalf("unconnected: %d %s", code, body)
	}

	link := e.link("alice")
	if !strings.HasPrefix(link, e.public.URL+"/-/login?ticket=") {
		t.Fatalf("login_url %q is not on public_url", link)
	}
	ticket := strings.TrimPrefix(link, e.public.URL+"/-/login?ticket=")
	status, loc, page := e.follow(link, nil)
	if status != http.StatusFound {
		t.Fatalf("login ended with %d: %s", status, page)
	}
	wantReturn(t, loc, "alice", "")

	code, v := e.account("alice")
	if code != 200 || !v.Connected || v.PanoptoUser != "alice" || v.Name != "Alice Example" || v.Email != "alice@example.edu" || v.ExpiresAt.IsZero() {
		t.Fatalf("GET /-/accounts/alice: %d %+v", code, v)
	}
	code, _, body = (&testEnv{t: t, srv: e.main}).call(http.MethodGet, "/Panopto/api/v1/whoami", nil, "X-Panopto-User", "alice")
	if code != 200 || !strings.Contains(string(body), `"alice"`) {
		t.Fatalf("alice's request: %d %s", code, body)
	}

	// The link is used up: back to OnTrack with ticket_invalid, no login.
	authorizes := e.fake.Stats().Authorizes
	status, loc, _ = e.follow(link, nil)
	if status != http.StatusFound {
		t.Fatalf("reused link: %d", status)
	}
	wantReturn(t, loc, "alice", "ticket_invalid")
	if e.fake.Stats().Authorizes != authorizes || e.flow.Pending() != 0 {
		t.Fatal("a reused link started a login")
	}

	// DELETE revokes at Panopto and forgets the grant.
	revoked := e.fake.Stats().GrantsRevoked
	req, _ := http.NewRequest(http.MethodDelete, e.main.URL+"/-/accounts/alice", nil)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var del map[string]any
	json.NewDecoder(resp.Body).Decode(&del)
	resp.Body.Close()
	if resp.StatusCode != 200 || del["revoked"] != true || del["connected"] != false {
		t.Fatalf("DELETE: %d %v", resp.StatusCode, del)
	}
	if e.fake.Stats().GrantsRevoked != revoked+1 {
		t.Fatal("DELETE did not revoke at Panopto")
	}
	if _, v := e.account("alice"); v.Connected || !v.ExpiresAt.IsZero() || v.PanoptoUser != "" {
		t.Fatalf("after DELETE: %+v", v)
	}

	got := map[string]int{}
	for _, a := range e.audits() {
		got[a["event"].(string)+"/"+a["result"].(string)]++
		if a["remote"] == "" || a["account"] != "alice" {
			t.Errorf("audit line %v", a)
		}
		// The login that reached Panopto names the user it verified.
		if a["event"] == "login" && a["result"] == "ok" && (a["panopto_sub"] != "alice" || a["panopto_user"] != "alice") {
			t.Errorf("login audit line without the Panopto identity: %v", a)
		}
	}
	want := map[string]int{"connect/ok": 1, "login/ok": 1, "login/ticket_invalid": 1, "disconnect/ok": 1}
	if len(got) != len(want) {
		t.Errorf("audit lines %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("audit lines %v, want %v", got, want)
		}
	}
	secrets := append(append(e.fake.Secrets(), ticket), e.fake.IDTokens()...)
	logs := e.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log holds a secret (%d chars)", len(s))
		}
	}
}

// TestConnectRefusals: what POST /-/connect and /-/login refuse, and that a
// refused /-/login starts nothing.
func TestConnectRefusals(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{TicketTTL: time.Minute, IdentityClaim: "sub"})
	for _, c := range []struct {
		name, account, returnTo string
		code                    int
		err                     string
	}{
		{"no account", "", "", 400, "invalid_account"},
		{"account with a slash", "a/b", "", 400, "invalid_account"},
		{"account with a space", "a b", "", 400, "invalid_account"},
		{"return_to elsewhere", "alice", "https://evil.example/panopto/", 400, "return_to_not_allowed"},
		{"return_to look-alike host", "alice", "https://ontrack.example.evil.example/panopto/", 400, "return_to_not_allowed"},
		{"return_to dot segments", "alice", "https://ontrack.example/panopto/../admin", 400, "return_to_not_allowed"},
		{"return_to user info", "alice", "https://ontrack.example@evil.example/panopto/", 400, "return_to_not_allowed"},
		{"return_to javascript", "alice", "javascript:alert(1)//ontrack.example/panopto/", 400, "return_to_not_allowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.connect(c.account, c.returnTo)
			if code != c.code || out["error"] != c.err {
				t.Fatalf("%d %v", code, out)
			}
		})
	}
	if code, out := e.connect("alice", ""); code != 201 || out["expires_at"] == nil {
		t.Fatalf("no return_to: %d %v", code, out)
	}
	resp, _ := http.Get(e.main.URL + "/-/connect")
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET /-/connect: %d", resp.StatusCode)
	}

	authorizes := e.fake.Stats().Authorizes
	noLogin := func(what string) {
		t.Helper()
		if e.flow.Pending() != 0 || e.fake.Stats().Authorizes != authorizes {
			t.Fatalf("%s started a login", what)
		}
	}
	// Per-account login without a ticket, on either listener.
	for _, base := range []string{e.main.URL, e.public.URL} {
		if code, _, _ := e.follow(base+"/-/login?account=bob", nil); code != 403 {
			t.Fatalf("%s/-/login?account=bob: %d", base, code)
		}
		noLogin("/-/login?account=bob")
	}
	// The operator's login is not on the public listener.
	if code, _, _ := e.follow(e.public.URL+"/-/login", nil); code != 403 {
		t.Fatalf("public /-/login: %d", code)
	}
	noLogin("public /-/login")

	// A ticket for alice rewritten for bob: its MAC fails; no redirect.
	link := e.link("alice")
	ticket, _ := url.QueryUnescape(strings.TrimPrefix(link, e.public.URL+"/-/login?ticket="))
	payload, mac, _ := strings.Cut(ticket, ".")
	raw, _ := b64url.DecodeString(payload)
	if !strings.Contains(string(raw), `"acct":"alice"`) {
		t.Fatalf("the ticket is not alice's: %s", raw)
	}
	forged := b64url.EncodeToString([]byte(strings.Replace(string(raw), `"acct":"alice"`, `"acct":"bob"`, 1))) + "." + mac
	if code, loc, _ := e.follow(e.public.URL+"/-/login?ticket="+url.QueryEscape(forged), nil); code != 403 || loc != "" {
		t.Fatalf("forged ticket: %d %q", code, loc)
	}
	if code, _, _ := e.follow(e.public.URL+"/-/login?ticket=garbage", nil); code != 403 {
		t.Fatalf("garbage ticket: %d", code)
	}
	noLogin("a forged ticket")

	// Expired: back to OnTrack with ticket_invalid.
	e.clk.Advance(time.Minute + time.Second)
	code, loc, _ := e.follow(link, nil)
	if code != 302 {
		t.Fatalf("expired: %d", code)
	}
	wantReturn(t, loc, "alice", "ticket_invalid")
	noLogin("an expired ticket")

	// Accounts off: no links.
	off := newConnectEnv(t, token.AccountsOff, ConnectOptions{})
	if code, out := off.connect("alice", ""); code != 409 || out["error"] != "accounts_mode" {
		t.Fatalf("mode off: %d %v", code, out)
	}
	if code, _ := off.account("alice"); code != 409 {
		t.Fatalf("mode off /-/accounts: %d", code)
	}
}

// TestConnectIDTokenRefused: an id_token that does not verify (nonce,
// audience, signature, issuer, expiry) ends the login with exchange_failed
// and stores nothing.
func TestConnectIDTokenRefused(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault panoptofake.IDTokenFault
	}{
		{"wrong nonce", panoptofake.IDTokenWrongNonce},
		{"wrong audience", panoptofake.IDTokenWrongAudience},
		{"bad signature", panoptofake.IDTokenBadSignature},
		{"wrong issuer", panoptofake.IDTokenWrongIssuer},
		{"expired", panoptofake.IDTokenExpired},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "sub"})
			e.fake.ForgeNextIDToken(c.fault)
			_, loc, _ := e.follow(e.link("alice"), nil)
			wantReturn(t, loc, "alice", "exchange_failed")
			if _, v := e.account("alice"); v.Connected {
				t.Fatalf("connected: %+v", v)
			}
			files, _ := filepath.Glob(filepath.Join(e.dir, "token.account-*.json"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				if strings.Contains(string(b), "access_token") {
					t.Fatalf("a grant was stored: %s", filepath.Base(f))
				}
			}
		})
	}
}

// TestConnectWithoutIDToken: a Panopto that sends no id_token connects an
// account only with identity_claim none (logged once, besides the warning
// every login without a check leaves); with a claim it is
// identity_mismatch.
func TestConnectWithoutIDToken(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "none"})
	for _, acct := range []string{"alice", "bob"} {
		e.fake.ForgeNextIDToken(panoptofake.IDTokenOmitted)
		_, loc, _ := e.follow(e.link(acct), nil)
		wantReturn(t, loc, acct, "")
		if _, v := e.account(acct); !v.Connected || v.PanoptoUser != "" {
			t.Fatalf("%s: %+v", acct, v)
		}
	}
	if n := strings.Count(e.logs.String(), "Panopto sent no id_token"); n != 1 {
		t.Fatalf("logged %d times, want once", n)
	}
	if n := strings.Count(e.logs.String(), "accounts.identity_claim: none"); n != 2 {
		t.Fatalf("%d warnings of a login without an identity check, want one per login", n)
	}

	for _, claim := range []string{"sub", "preferred_username", "email", "upn"} {
		strict := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: claim})
		strict.fake.ForgeNextIDToken(panoptofake.IDTokenOmitted)
		_, loc, _ := strict.follow(strict.link("alice"), nil)
		wantReturn(t, loc, "alice", "identity_mismatch")
		if _, v := strict.account("alice"); v.Connected {
			t.Fatalf("%s: connected without an identity: %+v", claim, v)
		}
	}
}

// TestConnectNeedsAnIdentityClaim: without accounts.identity_claim no
// per-student login connects anything, not even one whose id_token names the
// account: the sidecar cannot tell who signed in to Panopto.
func TestConnectNeedsAnIdentityClaim(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{})
	_, loc, _ := e.follow(e.link("alice"), nil)
	wantReturn(t, loc, "alice", "identity_mismatch")
	if _, v := e.account("alice"); v.Connected {
		t.Fatalf("connected without an identity check: %+v", v)
	}
}

// TestConnectIdentityClaims: each claim that names a Panopto user connects
// the account it names, and only that one; upn and email with a template.
func TestConnectIdentityClaims(t *testing.T) {
	for _, c := range []struct {
		claim, template string
	}{
		{"sub", ""},
		{"preferred_username", "{account}"},
		{"email", "{account}@example.edu"},
		{"upn", "{account}@deakin.example"},
		{"none", ""},
	} {
		t.Run(c.claim, func(t *testing.T) {
			e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: c.claim, IdentityTemplate: c.template})
			for _, u := range []string{"alice", "mallory"} {
				e.fake.SetProfile(u, panoptofake.Profile{Name: "Same Name", Email: u + "@example.edu", UPN: strings.ToUpper(u) + "@Deakin.Example"})
			}
			_, loc, _ := e.follow(e.link("alice"), nil)
			wantReturn(t, loc, "alice", "")
			_, loc, _ = e.follow(e.link("bob"), loginAs("mallory"))
			if c.claim == "none" {
				wantReturn(t, loc, "bob", "")
				return
			}
			wantReturn(t, loc, "bob", "identity_mismatch")
			if _, v := e.account("bob"); v.Connected {
				t.Fatalf("bob connected to mallory: %+v", v)
			}
		})
	}
}

// loginAs makes the stand-in sign user in, whatever account the link is
// for: a student opening another's link.
func loginAs(user string) func(*url.URL) {
	return func(u *url.URL) {
		q := u.Query()
		q.Set("login_hint", user) // the stand-in logs in whoever the hint names
		u.RawQuery = q.Encode()
	}
}

// TestConnectIdentityMismatch: mallory logs in to Panopto on bob's link:
// with identity_claim sub the login ends identity_mismatch, bob keeps the
// grant he had, and nothing is revoked: the refused token is dropped, never
// stored. The audit line names the Panopto user who signed in.
func TestConnectIdentityMismatch(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "preferred_username", IdentityTemplate: "{account}"})
	_, loc, _ := e.follow(e.link("bob"), nil)
	wantReturn(t, loc, "bob", "")
	m, _ := e.pool.Manager(context.Background(), "bob")
	before, err := m.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	revoked := e.fake.Stats().GrantsRevoked
	e.clk.Advance(time.Second) // tickets of one account are ordered by when they were made
	_, loc, _ = e.follow(e.link("bob"), loginAs("mallory"))
	wantReturn(t, loc, "bob", "identity_mismatch")
	after, err := m.Token(context.Background())
	if err != nil || after.AccessToken != before.AccessToken {
		t.Fatal("bob's grant changed")
	}
	code, _, body := (&testEnv{t: t, srv: e.main}).call(http.MethodGet, "/Panopto/api/v1/whoami", nil, "X-Panopto-User", "bob")
	if code != 200 || !strings.Contains(string(body), `"bob"`) {
		t.Fatalf("bob's request: %d %s", code, body)
	}
	if n := e.revokes.Load(); n != 0 || e.fake.Stats().GrantsRevoked != revoked {
		t.Fatalf("a refused login revoked: %d revocation calls", n)
	}
	if _, v := e.account("bob"); v.PanoptoUser != "bob" {
		t.Fatalf("bob: %+v", v)
	}
	var refused map[string]any
	for _, a := range e.audits() {
		if a["event"] == "login" && a["result"] == "identity_mismatch" {
			refused = a
		}
	}
	if refused == nil || refused["account"] != "bob" || refused["panopto_sub"] != "mallory" || refused["panopto_user"] != "mallory" {
		t.Fatalf("refused login's audit line: %v", refused)
	}
}

// TestPublicListenerServesOnlyLoginPages: on the public listener every path
// but the login pages and health is 404, whatever the method.
func TestPublicListenerServesOnlyLoginPages(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "sub"})
	for _, c := range []struct{ method, path string }{
		{"GET", "/Panopto/api/v1/folders"},
		{"POST", "/Panopto/PublicAPI/REST/sessionUpload"},
		{"PUT", "/Panopto/Upload/abc?partNumber=1"},
		{"POST", "/-/connect"},
		{"GET", "/-/accounts/alice"},
		{"DELETE", "/-/accounts/alice"},
		{"GET", "/-/accounts?state=disconnected"},
		{"GET", "/-/status"},
		{"GET", "/-/ready"},
		{"GET", "/metrics"},
		{"POST", "/-/uploads"},
		{"GET", "/-/uploads/x"},
		{"POST", "/-/logout"},
		{"GET", "/"},
		{"GET", "/-/login/"},
	} {
		req, _ := http.NewRequest(c.method, e.public.URL+c.path, strings.NewReader(`{"account":"alice"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s %s: %d, want 404", c.method, c.path, resp.StatusCode)
		}
	}
	if resp, err := http.Get(e.public.URL + "/-/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	_, loc, _ := e.follow(e.link("alice"), nil)
	wantReturn(t, loc, "alice", "")
	if e.fake.Stats().APICalls != 0 {
		t.Fatal("the public listener reached the API")
	}
}

func TestReturnToAllowed(t *testing.T) {
	allowed := []string{"https://ontrack.example/panopto/", "https://ontrack.example:8443/units", "http://localhost:3000"}
	for rt, want := range map[string]bool{
		"https://ontrack.example/panopto/":                     true,
		"https://ontrack.example/panopto/done?x=1#frag":        true,
		"https://ontrack.example:8443/units":                   true,
		"https://ontrack.example:8443/units/7?tab=panopto":     true,
		"https://ontrack.example:8443/units?x=1":               true,
		"http://localhost:3000/panopto":                        true,
		"https://ontrack.example:8443/unitsx":                  false,
		"http://localhost:3000.evil.example/":                  false,
		"https://ontrack.example/panopto":                      false,
		"https://ontrack.example/panopto/../admin":             false,
		"https://ontrack.example/panopto/%2e%2e/admin":         false,
		"https://ontrack.example/panopto/\\evil":               false,
		"https://evil.example/panopto/":                        false,
		"HTTPS://ontrack.example/panopto/":                     false,
		"https://ontrack.example/panopto/ x":                   false,
		"https://ontrack.example/panopto/x\r\nLocation: evil/": false,
	} {
		if got := returnToAllowed(rt, allowed); got != want {
			t.Errorf("returnToAllowed(%q) = %v, want %v", rt, got, want)
		}
	}
}

func TestReturnURL(t *testing.T) {
	for _, c := range []struct{ in, reason, want string }{
		{"https://o.example/p/done", "", "https://o.example/p/done?account=al%2Bice&panopto=connected"},
		{"https://o.example/p/done?unit=SIT%20101&b", "", "https://o.example/p/done?unit=SIT%20101&b&account=al%2Bice&panopto=connected"},
		{"https://o.example/p/done?panopto=connected&account=x&reason=y&keep=1", "identity_mismatch",
			"https://o.example/p/done?keep=1&account=al%2Bice&panopto=error&reason=identity_mismatch"},
		{"https://o.example/p/done?#tab", "access_denied", "https://o.example/p/done?account=al%2Bice&panopto=error&reason=access_denied#tab"},
	} {
		if got := returnURL(c.in, "al+ice", c.reason); got != c.want {
			t.Errorf("returnURL(%q, %q) = %q, want %q", c.in, c.reason, got, c.want)
		}
	}
}

var b64url = base64.RawURLEncoding
