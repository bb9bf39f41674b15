package token_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// newClock returns the settable clock shared by the stand-in and the managers.
func newClock() *testsupport.Clock {
	return testsupport.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
}

const (
	clientID     = "sidecar-test"
	clientSecret = "s3cr3t-client-value"
	redirectURI  = "http://localhost:9127/redirect"
)

type env struct {
	t     *testing.T
	clk   *testsupport.Clock
	fake  *panoptofake.Server
	srv   *httptest.Server
	ep    token.Endpoint
	store *token.FileStore
	path  string
	logs  *testsupport.SyncBuffer
	// timing is the managers' (zero: the defaults).
	timing token.Timing
}

func newEnv(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	clk := newClock()
	fake := panoptofake.New(panoptofake.Options{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURIs: []string{redirectURI},
		AccessTTL: ttl, Now: clk.Now, DefaultUser: "lecturer",
		Users: map[string]string{"svc.uploader": "pw-of-uploader"},
	})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "token.json")
	return &env{
		t: t, clk: clk, fake: fake, srv: srv, path: path, store: token.NewFileStore(path), logs: &testsupport.SyncBuffer{},
		ep: token.Endpoint{
			AuthURL:       srv.URL + "/Panopto/oauth2/connect/authorize",
			TokenURL:      srv.URL + "/Panopto/oauth2/connect/token",
			RevocationURL: srv.URL + "/Panopto/oauth2/connect/revocation",
			RedirectURL:   redirectURI,
			Scopes:        []string{"openid", "api", "offline_access"},
			ClientAuth:    "basic",
			RefreshBefore: 5 * time.Minute,
			Timeout:       5 * time.Second,
			LoginURL:      "http://localhost:9127/-/login",
		},
	}
}

func (e *env) manager(holder string, store token.Store) *token.Manager {
	return e.managerWith(holder, store, token.StaticCredentials{ID: clientID, Secret: clientSecret, Source: "env"})
}

func (e *env) managerWith(holder string, store token.Store, creds token.CredentialSource) *token.Manager {
	return token.NewManager(token.Options{
		Holder: holder, Store: store, Endpoint: e.ep, Credentials: creds, Timing: e.timing,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    e.clk.Now,
	})
}

// login drives the authorization-code flow the way a browser would: the
// flow's URL goes to the stand-in, which redirects to redirect_uri with a
// code; the code is exchanged with the verifier.
func (e *env) login(m *token.Manager, flow *login.LoginFlow) {
	e.t.Helper()
	l := flow.BeginReturning(e.ep, clientID, "", "")
	q := e.authorize(l)
	if q.Get("state") != l.State {
		e.t.Fatalf("state not echoed")
	}
	done, err := flow.Finish(q.Get("state"), l.Binding, true)
	if err != nil || done.Account != "" {
		e.t.Fatalf("finish: %v %q", err, done.Account)
	}
	g, _, err := m.ExchangeCode(context.Background(), q.Get("code"), done.Verifier)
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	if err := m.Install(context.Background(), g); err != nil {
		e.t.Fatalf("install: %v", err)
	}
}

func TestSecretRedaction(t *testing.T) {
	s := token.Secret("tok-abcdef-123")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", s, "any", slog.AnyValue(s), "grant", token.Grant{AccessToken: s, RefreshToken: s})
	js, _ := json.Marshal(map[string]any{"s": s, "g": token.Grant{AccessToken: s}})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %q %x %X %#v %+v", s, s, s, s, s, s, s),
		fmt.Sprintf("%v %+v %#v", token.Grant{AccessToken: s, RefreshToken: s}, &token.Grant{AccessToken: s}, token.Grant{RefreshToken: s}),
		fmt.Sprintf("%v", token.ClientCredentials{ID: "id", Secret: s, Password: s, AppKey: s}),
		logs.String(), string(js),
	}
	for _, o := range outs {
		if strings.Contains(o, "abcdef") {
			t.Errorf("secret leaked: %s", o)
		}
	}
	if s.Reveal() != "tok-abcdef-123" {
		t.Error("Reveal lost the value")
	}
}

func TestFileStoreCASAndAtomicity(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := token.NewFileStore(filepath.Join(dir, "t.json"))
	rec, v, err := st.Load(ctx, "")
	if err != nil || v != 0 || rec.Grant != nil {
		t.Fatalf("empty store: %+v %d %v", rec, v, err)
	}
	exp := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	g := &token.Grant{AccessToken: "a1", RefreshToken: "r1", TokenType: "Bearer", Scope: "api", Expiry: exp, ObtainedAt: exp.Add(-time.Hour)}
	v1, err := st.CompareAndSwap(ctx, "", 0, token.Record{Grant: g})
	if err != nil || v1 != 1 {
		t.Fatalf("first write: %d %v", v1, err)
	}
	if _, err := st.CompareAndSwap(ctx, "", 0, token.Record{Grant: g}); !errors.Is(err, token.ErrConflict) {
		t.Fatalf("stale write: %v, want ErrConflict", err)
	}
	rec, v, err = st.Load(ctx, "")
	if err != nil || v != 1 || rec.Grant.RefreshToken != "r1" || !rec.Grant.Expiry.Equal(exp) || rec.Grant.Scope != "api" {
		t.Fatalf("round trip: %+v %d %v", rec.Grant, v, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "t.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	// Accounts are separate records.
	if _, err := st.CompareAndSwap(ctx, "alice@example", 0, token.Record{Grant: g}); err != nil {
		t.Fatal(err)
	}
	if _, v, _ := st.Load(ctx, "bob"); v != 0 {
		t.Fatal("account records leak into each other")
	}

	// 50 writers race on the same version: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.CompareAndSwap(ctx, "", 1, token.Record{Grant: &token.Grant{AccessToken: token.Secret(fmt.Sprint(i))}})
			if err == nil {
				wins.Add(1)
			} else if !errors.Is(err, token.ErrConflict) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d writers won the same version", wins.Load())
	}
	// No temp files are left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestFileStoreCorruptIsNeverOverwritten(t *testing.T) {
	ctx := context.Background()
	for name, content := range map[string]string{
		"truncated": `{"version": 3, "access_token": "abc`,
		"garbage":   "\x00\x01not json",
		"noversion": `{"access_token": "x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "t.json")
			os.WriteFile(p, []byte(content), 0o600)
			st := token.NewFileStore(p)
			if _, _, err := st.Load(ctx, ""); !errors.Is(err, token.ErrCorrupt) {
				t.Fatalf("load: %v, want ErrCorrupt", err)
			}
			for _, v := range []int64{0, 1, 3} {
				if _, err := st.CompareAndSwap(ctx, "", v, token.Record{Grant: &token.Grant{AccessToken: "new"}}); err == nil {
					t.Fatalf("corrupt file overwritten at version %d", v)
				}
			}
			got, _ := os.ReadFile(p)
			if string(got) != content {
				t.Fatal("corrupt file changed")
			}
		})
	}
}

// authorizeParams is the query of a login URL.
func authorizeParams(loginURL string) url.Values {
	u, err := url.Parse(loginURL)
	if err != nil {
		return nil
	}
	return u.Query()
}

func TestLoginFlowState(t *testing.T) {
	clk := newClock()
	f := login.NewLoginFlow(10*time.Minute, clk.Now)
	ep := token.Endpoint{AuthURL: "https://p.example/Panopto/oauth2/connect/authorize", RedirectURL: redirectURI, Scopes: []string{"openid", "api", "offline_access"}}
	l := f.BeginReturning(ep, "cid", "", "")
	q := authorizeParams(l.URL)
	for k, want := range map[string]string{"client_id": "cid", "response_type": "code", "redirect_uri": redirectURI,
		"scope": "openid api offline_access", "state": l.State, "code_challenge_method": "S256", "prompt": "consent"} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	if len(q.Get("code_challenge")) != 43 || q.Get("nonce") == "" {
		t.Errorf("challenge %q nonce %q", q.Get("code_challenge"), q.Get("nonce"))
	}
	// Wrong browser, or none: refused, and the login stays for the browser
	// that started it, which alone can end it, once.
	for _, other := range []string{"other-cookie", ""} {
		if _, err := f.Finish(l.State, other, true); !errors.Is(err, login.ErrWrongBrowser) {
			t.Fatalf("binding %q: %v", other, err)
		}
	}
	if _, err := f.Finish(l.State, l.Binding, true); err != nil {
		t.Fatalf("the right browser after a wrong one: %v", err)
	}
	if _, err := f.Finish(l.State, l.Binding, true); !errors.Is(err, login.ErrBadState) {
		t.Fatalf("reused state: %v", err)
	}
	// Single use.
	l2 := f.BeginReturning(ep, "cid", "alice", "")
	if done, err := f.Finish(l2.State, l2.Binding, true); err != nil || done.Account != "alice" {
		t.Fatalf("finish: %v %q", err, done.Account)
	}
	if _, err := f.Finish(l2.State, l2.Binding, true); !errors.Is(err, login.ErrBadState) {
		t.Fatalf("second use: %v", err)
	}
	// Expiry.
	l3 := f.BeginReturning(ep, "cid", "", "")
	clk.Advance(10*time.Minute + time.Second)
	if _, err := f.Finish(l3.State, l3.Binding, false); !errors.Is(err, login.ErrBadState) {
		t.Fatalf("expired state: %v", err)
	}
	if _, err := f.Finish("made-up", "", false); !errors.Is(err, login.ErrBadState) {
		t.Fatal("unknown state accepted")
	}
}

// TestSingleFlightAcrossExpiry: 200 requests arrive after the token expired;
// exactly one refresh reaches the token endpoint and every request gets the
// new, valid token.
func TestSingleFlightAcrossExpiry(t *testing.T) {
	e := newEnv(t, time.Hour)
	m := e.manager("a", e.store)
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	old, err := m.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := e.fake.Stats().TokenCalls["refresh_token"]
	e.clk.Advance(time.Hour + time.Minute) // past expiry

	var wg sync.WaitGroup
	var failures atomic.Int32
	tokens := sync.Map{}
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := m.Token(context.Background())
			if err != nil {
				failures.Add(1)
				return
			}
			tokens.Store(g.AccessToken, true)
		}()
	}
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d requests got no token", f)
	}
	if calls := e.fake.Stats().TokenCalls["refresh_token"] - before; calls != 1 {
		t.Fatalf("token endpoint called %d times, want 1", calls)
	}
	n := 0
	tokens.Range(func(k, _ any) bool {
		n++
		if k.(token.Secret) == old.AccessToken || !e.fake.TokenActive(k.(token.Secret).Reveal()) {
			t.Error("a request got an expired or inactive token")
		}
		return true
	})
	if n != 1 {
		t.Fatalf("%d different tokens handed out", n)
	}
	// The rotated refresh token was persisted.
	rec, _, _ := e.store.Load(context.Background(), "")
	if !e.fake.RefreshTokenActive(rec.Grant.RefreshToken.Reveal()) {
		t.Fatal("the stored refresh token is not the live one")
	}
}

// A waiter that gives up does not cancel the shared refresh (in a
// synctest bubble: the stand-in's slow answer takes no real time).
func TestWaiterCancellationDoesNotCancelRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := panoptofake.New(panoptofake.Options{ClientID: clientID, ClientSecret: clientSecret, AccessTTL: time.Hour,
			Users: map[string]string{"svc.uploader": "pw-of-uploader"}})
		ep := token.Endpoint{TokenURL: "http://panopto.invalid/Panopto/oauth2/connect/token", ClientAuth: "basic",
			Scopes: []string{"openid", "api", "offline_access"}, RefreshBefore: 5 * time.Minute, Timeout: 5 * time.Second}
		m := token.NewManager(token.Options{
			Store: token.NewFileStore(filepath.Join(t.TempDir(), "t.json")), Endpoint: ep, HTTPClient: inProcess(fake),
			Credentials: token.StaticCredentials{ID: clientID, Secret: clientSecret, Username: "svc.uploader", Password: "pw-of-uploader"},
			Password: func(_ context.Context, c token.ClientCredentials) (string, token.Secret, error) {
				return c.Username, c.Password, nil
			},
		})
		if _, err := m.Token(context.Background()); err != nil { // logs in
			t.Fatal(err)
		}
		time.Sleep(2 * time.Hour) // expired
		fake.InjectTokenFaults(panoptofake.FaultTimeout(300 * time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := m.Token(ctx); err == nil {
			t.Fatal("expected the impatient caller to give up")
		}
		// A patient caller joins or follows the shared refresh and succeeds.
		g, err := m.Token(context.Background())
		if err != nil || !fake.TokenActive(g.AccessToken.Reveal()) {
			t.Fatalf("patient caller: %v", err)
		}
		if st := fake.Stats(); st.RefreshReuse != 0 || st.Refreshes != 1 {
			t.Fatalf("%d refreshes, refresh token reused %d times; want 1, 0", st.Refreshes, st.RefreshReuse)
		}
	})
}

// Transient failures while the old token is valid: the old one keeps being
// served; invalid_grant drops to login required.
func TestTransientThenInvalidGrant(t *testing.T) {
	e := newEnv(t, time.Hour)
	m := e.manager("a", e.store)
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	g0, _ := m.Token(context.Background())
	e.clk.Advance(50 * time.Minute) // still valid
	for _, f := range []panoptofake.Fault{panoptofake.FaultStatus(500), panoptofake.FaultGarbage, panoptofake.FaultEmpty200, panoptofake.FaultReset} {
		e.fake.InjectTokenFaults(f)
		if _, err := m.ForceRefresh(context.Background(), nil); err == nil {
			t.Fatalf("fault %v: refresh succeeded", f)
		}
		e.clk.Advance(time.Minute) // past the backoff (seconds after a few failures)
		g, err := m.Token(context.Background())
		if err != nil || g.AccessToken != g0.AccessToken {
			t.Fatalf("fault %v: old valid token not served: %v", f, err)
		}
	}
	if !strings.Contains(m.Status().LastError, "token endpoint") {
		t.Errorf("status last_error = %q", m.Status().LastError)
	}
	// The refresh token dies (revoked at Panopto): login required.
	rec, _, _ := e.store.Load(context.Background(), "")
	revoke(t, e, rec.Grant.RefreshToken.Reveal())
	e.clk.Advance(7 * time.Minute) // expired; backoff over
	if _, err := m.Token(context.Background()); !errors.Is(err, token.ErrNotConnected) {
		t.Fatalf("after invalid_grant: %v", err)
	}
	if ok, reason := m.Ready(); ok || reason != token.ReasonRefreshRefused {
		t.Fatalf("ready = %v %q; status %+v; logs:\n%s", ok, reason, m.Status(), e.logs.String())
	}
	if !strings.Contains(e.logs.String(), "login required") || !strings.Contains(e.logs.String(), "http://localhost:9127/-/login") {
		t.Error("no clear log line with the login URL")
	}
	rec, _, _ = e.store.Load(context.Background(), "")
	if rec.Grant != nil || rec.Dropped != "invalid_grant" {
		t.Fatalf("store still holds the dead grant: %+v", rec)
	}
}

func revoke(t *testing.T, e *env, token string) {
	req, _ := http.NewRequest(http.MethodPost, e.ep.RevocationURL, strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v", err)
	}
	resp.Body.Close()
}

// Replicas sharing a store: across many expiries only one refresh reaches
// the token endpoint per expiry, and no rotated refresh token is reused.
func TestReplicasShareOneRefreshPerExpiry(t *testing.T) {
	e := newEnv(t, time.Hour)
	e.timing.LeasePoll = 5 * time.Millisecond // replicas waiting on the lease look again soon
	ms := []*token.Manager{e.manager("r1", e.store), e.manager("r2", token.NewFileStore(e.path)), e.manager("r3", token.NewFileStore(e.path))}
	e.login(ms[0], login.NewLoginFlow(0, e.clk.Now))
	ctx := context.Background()
	for _, m := range ms[1:] {
		if _, err := m.Token(ctx); err != nil { // adopts from the store
			t.Fatalf("replica did not adopt the login: %v", err)
		}
	}
	for cycle := range 6 {
		before := e.fake.Stats().Refreshes
		e.clk.Advance(time.Hour + time.Second)
		var wg sync.WaitGroup
		var failed atomic.Int32
		for i := range 90 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g, err := ms[i%3].Token(ctx)
				if err != nil || !e.fake.TokenActive(g.AccessToken.Reveal()) {
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		if f := failed.Load(); f != 0 {
			t.Fatalf("cycle %d: %d requests without a valid token", cycle, f)
		}
		if n := e.fake.Stats().Refreshes - before; n != 1 {
			t.Fatalf("cycle %d: %d refreshes, want 1", cycle, n)
		}
	}
	st := e.fake.Stats()
	if st.RefreshReuse != 0 || st.GrantsRevoked != 0 {
		t.Fatalf("reuse %d, revoked %d", st.RefreshReuse, st.GrantsRevoked)
	}
}

// A restart loads the grant from the store and refreshes it if needed.
func TestGrantSurvivesRestart(t *testing.T) {
	e := newEnv(t, time.Hour)
	m := e.manager("a", e.store)
	e.login(m, login.NewLoginFlow(0, e.clk.Now))
	e.clk.Advance(3 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m2 := e.manager("b", token.NewFileStore(e.path))
	m2.Load(ctx)
	go m2.Run(ctx)
	g, err := m2.Token(ctx)
	if err != nil || !e.fake.TokenActive(g.AccessToken.Reveal()) {
		t.Fatalf("after restart: %v", err)
	}
}

// The password grant logs in without a browser and logs in again when the
// refresh token dies.
func TestPasswordGrant(t *testing.T) {
	e := newEnv(t, time.Hour)
	m := token.NewManager(token.Options{
		Store: e.store, Endpoint: e.ep, Now: e.clk.Now,
		Credentials: token.StaticCredentials{ID: clientID, Secret: clientSecret, Username: "svc.uploader", Password: "pw-of-uploader"},
		Password: func(_ context.Context, c token.ClientCredentials) (string, token.Secret, error) {
			return c.Username, c.Password, nil
		},
	})
	ctx := context.Background()
	g, err := m.Token(ctx)
	if err != nil || !e.fake.TokenActive(g.AccessToken.Reveal()) {
		t.Fatalf("password login: %v", err)
	}
	rec, _, _ := e.store.Load(ctx, "")
	revoke(t, e, rec.Grant.RefreshToken.Reveal())
	e.clk.Advance(2 * time.Hour)
	g2, err := m.Token(ctx)
	if err != nil || !e.fake.TokenActive(g2.AccessToken.Reveal()) {
		t.Fatalf("re-login after a dead refresh token: %v", err)
	}
	if n := e.fake.Stats().TokenCalls["password"]; n != 2 {
		t.Fatalf("password grant calls = %d, want 2", n)
	}
}

// inProcess is an HTTP client that hands every request to h in this
// process: no sockets, so it works inside a synctest bubble.
func inProcess(h http.Handler) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: handlerTransport{h},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// The background loop refreshes ahead of expiry, on its own timers (a
// short TTL, in a synctest bubble: the seconds pass at once).
func TestBackgroundRefreshAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := panoptofake.New(panoptofake.Options{ClientID: clientID, ClientSecret: clientSecret, RedirectURIs: []string{redirectURI}, AccessTTL: 2 * time.Second})
		const base = "http://panopto.invalid"
		ep := token.Endpoint{AuthURL: base + "/Panopto/oauth2/connect/authorize", TokenURL: base + "/Panopto/oauth2/connect/token",
			RedirectURL: redirectURI, Scopes: []string{"openid", "api", "offline_access"}, ClientAuth: "body", RefreshBefore: time.Second, Timeout: 2 * time.Second}
		client := inProcess(fake)
		store := token.NewFileStore(filepath.Join(t.TempDir(), "t.json"))
		m := token.NewManager(token.Options{Store: store, Endpoint: ep, HTTPClient: client, Credentials: token.StaticCredentials{ID: clientID, Secret: clientSecret}})
		flow := login.NewLoginFlow(0, nil)
		l := flow.BeginReturning(ep, clientID, "", "")
		resp, err := client.Get(l.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		done, err := flow.Finish(loc.Query().Get("state"), "", false)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		g, _, err := m.ExchangeCode(ctx, loc.Query().Get("code"), done.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Install(ctx, g); err != nil {
			t.Fatal(err)
		}
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			m.Run(ctx)
		}()
		for range 500 { // 10 s
			g, err := m.Token(ctx)
			if err != nil || !fake.TokenActive(g.AccessToken.Reveal()) {
				t.Fatalf("no valid token at %v: %v", time.Now(), err)
			}
			if fake.Stats().Refreshes >= 3 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		<-ran
		if n := fake.Stats().Refreshes; n < 3 {
			t.Fatalf("background refreshes = %d, want >= 3", n)
		}
		if fake.Stats().RefreshReuse != 0 {
			t.Fatal("refresh token reused")
		}
	})
}

// A refused refresh token's log line says how to connect again: the login
// URL only for the default grant and only where one works (no
// public_listen); a per-student account connects through POST /-/connect.
func TestRefusedRefreshSaysHowToConnect(t *testing.T) {
	for _, c := range []struct {
		name, key, loginURL string
		want, not           string
	}{
		{"default grant", "", "http://localhost:9127/-/login", `"login_url":"http://localhost:9127/-/login"`, `"connect"`},
		{"default grant with public_listen", "", "", `"connect":"POST /-/connect"`, "/-/login"},
		{"an account", "alice", "http://localhost:9127/-/login", `"connect":"POST /-/connect"`, "/-/login"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, time.Hour)
			e.ep.LoginURL = c.loginURL
			m := token.NewManager(token.Options{
				Key: c.key, Holder: "a", Store: e.store, Endpoint: e.ep,
				Credentials: token.StaticCredentials{ID: clientID, Secret: clientSecret, Source: "env"},
				Logger:      slog.New(slog.NewJSONHandler(e.logs, nil)),
				Now:         e.clk.Now,
			})
			e.login(m, login.NewLoginFlow(0, e.clk.Now))
			rec, _, _ := e.store.Load(context.Background(), c.key)
			if rec.Grant == nil {
				t.Fatalf("no grant stored for %q", c.key)
			}
			revoke(t, e, rec.Grant.RefreshToken.Reveal())
			e.clk.Advance(61 * time.Minute)
			if _, err := m.Token(context.Background()); !errors.Is(err, token.ErrNotConnected) {
				t.Fatalf("after invalid_grant: %v", err)
			}
			var line string
			for _, l := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(l, "login required") {
					line = l
				}
			}
			if !strings.Contains(line, c.want) || strings.Contains(line, c.not) {
				t.Errorf("log line %q: want %s, and no %s", line, c.want, c.not)
			}
		})
	}
}
