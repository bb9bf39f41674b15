package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// FuzzRedirectQuery throws raw query strings and Cookie headers at
// /redirect. "{STATE}" and "{BINDING}" in the input stand for a login
// really begun for this call, so the fuzzer reaches the code exchange
// (against a closed token endpoint) as well as every refusal. Whatever
// arrives: no panic, an HTML page, no 5xx but the 502 of an exchange that
// reached the token endpoint, nothing reflected as markup, and the sidecar
// never becomes connected.
func FuzzRedirectQuery(f *testing.F) {
	for _, s := range [][2]string{
		{"code=abc&state={STATE}", bindingCookie + "={BINDING}"},
		{"code=abc&state={STATE}", ""},
		{"code=abc&state={STATE}", bindingCookie + "=wrong"},
		{"code=abc&state=made-up", bindingCookie + "={BINDING}"},
		{"error=access_denied&state={STATE}", bindingCookie + "={BINDING}"},
		{"error=%3Cscript%3Ealert(1)%3C/script%3E&state={STATE}", ""},
		{"code=%3Cscript%3E&state=%3Cscript%3Ealert(1)%3C%2Fscript%3E", bindingCookie + "=<script>"},
		{"code=a&code=b&state={STATE}&state=x", bindingCookie + "={BINDING}; " + bindingCookie + "=x"},
		{"state={STATE}", bindingCookie + "={BINDING}"},
		{"code=&state=", ""},
		{"%zz&code=%&state=%%", "=;;=" + bindingCookie},
		{"code=abc;state={STATE}", bindingCookie + `="{BINDING}"`},
		{"", ""},
	} {
		f.Add(s[0], s[1])
	}

	// A token endpoint that refuses connections: a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	const public = "http://127.0.0.1:9127"
	ep := token.Endpoint{
		AuthURL:     closed + "/Panopto/oauth2/connect/authorize",
		TokenURL:    closed + "/Panopto/oauth2/connect/token",
		RedirectURL: public + "/redirect",
		Scopes:      []string{"openid", "api", "offline_access"},
		ClientAuth:  "basic",
		Timeout:     2 * time.Second,
		LoginURL:    public + "/-/login",
	}
	tokenFile := filepath.Join(f.TempDir(), "token.json")
	creds := token.StaticCredentials{ID: "fuzz-client", Secret: "fuzz-secret-8c1d", Source: "env"}
	pool := token.NewPool(token.PoolOptions{Store: token.NewFileStore(tokenFile), Credentials: creds, PoolSettings: token.PoolSettings{Endpoint: ep}})
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	pool.Load(ctx)
	go pool.Run(ctx)
	m := pool.Default()
	flow := login.NewLoginFlow(time.Minute, nil)
	up, _ := url.Parse(closed)
	h := New(Deps{
		Accounts:    oneAccount{m},
		Credentials: creds,
		Flow:        flow,
	}, Options{
		Upstream: up, PublicURL: public, Routes: defaultRoutes(), Endpoint: ep,
		AccountsMode: token.AccountsOff, AccountsHeader: "X-Panopto-User", RequireBrowserBinding: true,
	})

	f.Fuzz(func(t *testing.T, rawQuery, cookie string) {
		if strings.ContainsAny(cookie, "\r\n\x00") || !validQuery(rawQuery) {
			return // an HTTP server refuses these before any handler runs
		}
		l := flow.BeginReturning(ep, creds.ID, "", "")
		defer flow.Finish(l.State, "", false) // spend it if the input did not
		q := strings.ReplaceAll(strings.ReplaceAll(rawQuery, "{STATE}", l.State), "{BINDING}", l.Binding)
		c := strings.ReplaceAll(strings.ReplaceAll(cookie, "{STATE}", l.State), "{BINDING}", l.Binding)

		req := httptest.NewRequest(http.MethodGet, "/redirect", nil)
		req.URL.RawQuery = q
		req.RequestURI = "/redirect?" + q
		req.Host = "localhost:9127"
		if c != "" {
			req.Header.Set("Cookie", c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		code, body := rec.Code, rec.Body.String()
		if code >= 500 && code != http.StatusBadGateway {
			t.Fatalf("status %d for %q / %q", code, rawQuery, cookie)
		}
		if code == http.StatusBadGateway && !strings.Contains(q, l.State) {
			t.Fatalf("502 without the login's state: %q / %q", rawQuery, cookie)
		}
		if code != http.StatusOK && code != http.StatusBadRequest && code != http.StatusBadGateway {
			t.Fatalf("status %d for %q / %q", code, rawQuery, cookie)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Fatalf("content type %q for %q", ct, rawQuery)
		}
		if strings.Contains(strings.ToLower(body), "<script") {
			t.Fatalf("a script in the page for %q / %q:\n%s", rawQuery, cookie, body)
		}
		// The page is the fixed template; the parts filled in hold no
		// markup character (html/template escapes what came from outside).
		if !pageShape.MatchString(body) {
			t.Fatalf("page not of the expected shape for %q / %q:\n%s", rawQuery, cookie, body)
		}
		if strings.Contains(body, l.Binding) || strings.Contains(body, creds.Secret.Reveal()) {
			t.Fatal("the page shows the login binding or the client secret")
		}
		// Never connected: the exchange cannot succeed.
		if ok, _ := m.Ready(); ok {
			t.Fatalf("connected after %q / %q", rawQuery, cookie)
		}
		if _, err := os.Stat(tokenFile); err == nil {
			t.Fatalf("a grant was stored after %q / %q", rawQuery, cookie)
		}
	})
}

// pageShape is page()'s template with its three fields as text without
// markup characters.
var pageShape = regexp.MustCompile(`^<!doctype html>\n<html><head><meta charset="utf-8"><title>[^<>"]* · panopto-sidecar</title>\n<style>[^<>]*</style>\n</head><body><h1>[^<>"]*</h1><p>[^<>"]*</p></body></html>\n?$`)

// validQuery reports whether a request line could carry q: net/http refuses
// control characters, spaces and non-ASCII bytes in the request target.
func validQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		if q[i] <= ' ' || q[i] >= 0x7f || q[i] == '#' {
			return false
		}
	}
	return true
}
