package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Shared fixtures for the proxy tests: a settable clock, the Panopto
// stand-in as OAuth2 server (and optionally as upstream), an upstream that
// records what it received, and a sidecar Handler served on 127.0.0.1.

const (
	testClientID     = "sidecar-proxy-test"
	testClientSecret = "client-secret-value-9f8e7d"
	secretHeader     = "X-Sidecar-Secret"
)

// seenRequest is what the recording upstream received.
type seenRequest struct {
	Method           string
	Host             string
	RequestURI       string
	RawQuery         string
	Header           http.Header
	Body             []byte
	ContentLength    int64
	TransferEncoding []string
}

// recordingUpstream counts and records every request. With handle nil it
// reads the whole body and answers 200 {"ok":true}; otherwise handle answers
// (and reads the body itself, so streaming tests are not buffered here).
type recordingUpstream struct {
	srv    *httptest.Server
	n      atomic.Int64
	mu     sync.Mutex
	seen   []seenRequest
	handle func(w http.ResponseWriter, r *http.Request, body []byte)
	raw    http.HandlerFunc
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.n.Add(1)
	s := seenRequest{Method: r.Method, Host: r.Host, RequestURI: r.RequestURI, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding}
	if u.raw != nil {
		u.mu.Lock()
		u.seen = append(u.seen, s)
		u.mu.Unlock()
		u.raw(w, r)
		return
	}
	s.Body, _ = io.ReadAll(r.Body)
	u.mu.Lock()
	u.seen = append(u.seen, s)
	u.mu.Unlock()
	if u.handle != nil {
		u.handle(w, r, s.Body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (u *recordingUpstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

func (u *recordingUpstream) last(t *testing.T) seenRequest {
	t.Helper()
	r := u.requests()
	if len(r) == 0 {
		t.Fatal("the upstream received nothing")
	}
	return r[len(r)-1]
}

type envConfig struct {
	// upstream: nil means the Panopto stand-in is the upstream too.
	upstream  *recordingUpstream
	routes    []Route
	connected bool // log in through the sidecar before returning
	retry     int64
	rewrite   bool
	secret    string
	transport TransportOptions
	fakeOpts  func(*panoptofake.Options)
	watcher   Watcher
}

type testEnv struct {
	t       *testing.T
	clk     *testsupport.Clock
	fake    *panoptofake.Server
	fakeSrv *httptest.Server
	up      *recordingUpstream
	upURL   *url.URL
	srv     *httptest.Server
	h       *Handler
	m       *token.Manager
	metrics *Metrics
	logs    *testsupport.SyncBuffer
	path    string
	ep      token.Endpoint
	flow    *login.LoginFlow
	cfg     envConfig
}

func defaultRoutes() []Route {
	return []Route{
		{Prefix: "/Panopto/api/", Inject: true},
		{Prefix: "/Panopto/PublicAPI/", Inject: true},
		{Prefix: "/Panopto/Upload/", Inject: false},
	}
}

type oneAccount struct{ m *token.Manager }

func (a oneAccount) Manager(_ context.Context, account string) (*token.Manager, error) {
	if account != "" {
		return nil, ErrUnknownAccount
	}
	return a.m, nil
}

func newEnv(t *testing.T, cfg envConfig) *testEnv {
	t.Helper()
	if cfg.routes == nil {
		cfg.routes = defaultRoutes()
	}
	clk := testsupport.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	e := &testEnv{t: t, clk: clk, logs: &testsupport.SyncBuffer{}, cfg: cfg}

	// The sidecar's address must be known before the stand-in registers the
	// redirect URI, so its server starts last.
	e.srv = httptest.NewUnstartedServer(nil)
	publicURL := "http://" + e.srv.Listener.Addr().String()

	fo := panoptofake.Options{
		ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{publicURL + "/redirect"},
		Now:          clk.Now, DefaultUser: "lecturer",
	}
	if cfg.fakeOpts != nil {
		cfg.fakeOpts(&fo)
	}
	e.fake = panoptofake.New(fo)
	e.fakeSrv = httptest.NewServer(e.fake)
	t.Cleanup(e.fakeSrv.Close)

	upstream := e.fakeSrv.URL
	if cfg.upstream != nil {
		e.up = cfg.upstream
		e.up.srv = httptest.NewServer(e.up)
		t.Cleanup(e.up.srv.Close)
		upstream = e.up.srv.URL
	}
	e.upURL, _ = url.Parse(upstream)

	e.ep = token.Endpoint{
		AuthURL:       e.fakeSrv.URL + "/Panopto/oauth2/connect/authorize",
		TokenURL:      e.fakeSrv.URL + "/Panopto/oauth2/connect/token",
		RevocationURL: e.fakeSrv.URL + "/Panopto/oauth2/connect/revocation",
		RedirectURL:   publicURL + "/redirect",
		Scopes:        []string{"openid", "api", "offline_access"},
		ClientAuth:    "basic",
		RefreshBefore: 5 * time.Minute,
		Timeout:       5 * time.Second,
		LoginURL:      publicURL + "/-/login",
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.metrics = NewMetrics()
	e.path = filepath.Join(t.TempDir(), "token.json")
	creds := token.StaticCredentials{ID: testClientID, Secret: testClientSecret, Source: "env"}
	pool := token.NewPool(token.PoolOptions{
		Store: token.NewFileStore(e.path), Credentials: creds, PoolSettings: token.PoolSettings{Endpoint: e.ep},
		Logger: logger.With("component", "oauth"), Now: clk.Now,
		Hooks: token.Hooks{Refresh: e.metrics.RefreshResult, Expiry: e.metrics.TokenExpiry},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	pool.Load(ctx)
	go pool.Run(ctx)
	e.m = pool.Default()

	e.flow = login.NewLoginFlow(0, clk.Now)
	e.h = New(Deps{
		Accounts:    oneAccount{e.m},
		Credentials: creds,
		Flow:        e.flow,
		Transport:   NewTransport(cfg.transport),
		Logger:      logger.With("component", "proxy"),
		Metrics:     e.metrics,
		Connect:     ConnectDeps{Now: clk.Now}, // the stand-in's id_tokens are dated by clk
		Watcher:     cfg.watcher,
	}, Options{
		Upstream:            e.upURL,
		PublicURL:           publicURL,
		Routes:              cfg.routes,
		Endpoint:            e.ep,
		AccountsMode:        token.AccountsOff,
		AccountsHeader:      "X-Panopto-User",
		RewriteUploadTarget: cfg.rewrite,
		RetryBodyLimit:      cfg.retry,
		SharedSecret:        token.Secret(cfg.secret),
		SharedSecretHeader:  secretHeader,
		Connect:             ConnectOptions{Issuer: e.fakeSrv.URL + "/Panopto/oauth2"},
	})
	e.srv.Config.Handler = e.h
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	if cfg.connected {
		e.login()
	}
	return e
}

// do sends a request to the sidecar, adding the shared secret if one is set.
func (e *testEnv) do(req *http.Request) *http.Response {
	e.t.Helper()
	if e.cfg.secret != "" && req.Header.Get(secretHeader) == "" {
		req.Header.Set(secretHeader, e.cfg.secret)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

// call sends a request and returns the status, headers and whole body.
func (e *testEnv) call(method, target string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp := e.do(req)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read %s %s: %v", method, target, err)
	}
	return resp.StatusCode, resp.Header, b
}

// browser is a client that keeps cookies and does not follow redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// loginPage drives the authorization-code login as a browser would, through
// the sidecar's /-/login, the stand-in's authorize endpoint and the sidecar's
// /redirect. It returns the final page's status and body.
func (e *testEnv) loginPage() (int, string) {
	e.t.Helper()
	c := browser()
	target := e.srv.URL + "/-/login"
	for hop := 0; hop < 5; hop++ {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		if e.cfg.secret != "" && strings.HasPrefix(target, e.srv.URL) {
			req.Header.Set(secretHeader, e.cfg.secret)
		}
		resp, err := c.Do(req)
		if err != nil {
			e.t.Fatalf("login hop %d (%s): %v", hop, target, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return resp.StatusCode, string(b)
		}
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			e.t.Fatal(err)
		}
		target = next.String()
	}
	e.t.Fatal("login: too many redirects")
	return 0, ""
}

func (e *testEnv) login() {
	e.t.Helper()
	code, body := e.loginPage()
	if code != http.StatusOK || !strings.Contains(body, "Connected to Panopto") {
		e.t.Fatalf("login ended with %d: %s", code, body)
	}
}

// storedTokens reads the access and refresh token from the token file.
func (e *testEnv) storedTokens() (access, refresh string) {
	e.t.Helper()
	data, err := os.ReadFile(e.path)
	if err != nil {
		e.t.Fatalf("read token store: %v", err)
	}
	var rec struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		e.t.Fatalf("token store: %v", err)
	}
	if rec.AccessToken == "" || rec.RefreshToken == "" {
		e.t.Fatalf("token store holds no grant: %s", data)
	}
	return rec.AccessToken, rec.RefreshToken
}

// scrape returns /metrics.
func (e *testEnv) scrape() string {
	e.t.Helper()
	code, _, b := e.call(http.MethodGet, "/metrics", nil)
	if code != http.StatusOK {
		e.t.Fatalf("/metrics answered %d", code)
	}
	return string(b)
}

// metric returns the value of the sample of name whose labels include all
// of labels ("k", "v", ...), or -1 when there is none.
func metric(text, name string, labels ...string) float64 {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series := line[:sp]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(series, labels[i]+`="`+labels[i+1]+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

// counter is metric with an absent counter read as 0.
func counter(text, name string, labels ...string) float64 {
	return max(metric(text, name, labels...), 0)
}

// rawRoundTrip writes req verbatim on a new TCP connection to addr and reads
// one response.
func rawRoundTrip(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", firstLine(req), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

func (e *testEnv) addr() string { return e.srv.Listener.Addr().String() }

// jsonBody decodes a JSON object answer.
func jsonBody(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %q", err, b)
	}
	return m
}
