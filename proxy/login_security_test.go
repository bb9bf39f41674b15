package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// TestLoginLinkHead: a HEAD on a login link (a chat's link preview, a mail
// scanner) answers 200 without redeeming the ticket or starting a login, on
// either listener; the student's GET afterwards still works.
func TestLoginLinkHead(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "sub"})
	link := e.link("alice")
	c := browser()
	for i, target := range []string{link, strings.Replace(link, e.public.URL, e.main.URL, 1), e.main.URL + "/-/login"} {
		req, _ := http.NewRequest(http.MethodHead, target, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || resp.Header.Get("Set-Cookie") != "" ||
			resp.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("HEAD %d (link, link on listen, operator's login): %d %v", i, resp.StatusCode, resp.Header.Get("Location") != "")
		}
	}
	if e.flow.Pending() != 0 || e.fake.Stats().Authorizes != 0 {
		t.Fatal("a HEAD started a login")
	}
	for _, a := range e.audits() {
		if a["event"] == "login" {
			t.Fatalf("a HEAD left a login audit line: %v", a)
		}
	}
	_, loc, _ := e.follow(link, nil)
	wantReturn(t, loc, "alice", "")
}

// startLogin opens link in a browser that stops at Panopto's authorize
// page, and returns that browser, the authorize URL and the login's state.
func (e *connectEnv) startLogin(link string) (*http.Client, string, string) {
	e.t.Helper()
	c := browser()
	resp, err := c.Get(link)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasSuffix(loc.Path, "/connect/authorize") {
		e.t.Fatalf("login did not go to Panopto: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return c, loc.String(), loc.Query().Get("state")
}

// goOn follows redirects from target in browser c until the browser is sent
// back to OnTrack, and returns where.
func (e *connectEnv) goOn(c *http.Client, target string) string {
	e.t.Helper()
	for hop := 0; hop < 8; hop++ {
		resp, err := c.Get(target)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			e.t.Fatalf("%d: %s", resp.StatusCode, b)
		}
		next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if next.Host == "ontrack.example" {
			return next.String()
		}
		target = next.String()
	}
	e.t.Fatal("too many redirects")
	return ""
}

// TestRedirectErrorNeedsTheBrowser: /redirect?error=… from a browser without
// the login's cookie (someone who learnt the state) ends nothing: the
// student's own browser still completes the login. From the student's
// browser the error ends it.
func TestRedirectErrorNeedsTheBrowser(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "sub"})
	student, authorize, state := e.startLogin(e.link("alice"))

	for _, cookie := range []string{"", bindingCookie + "=not-the-browser"} {
		req, _ := http.NewRequest(http.MethodGet, e.public.URL+"/redirect?error=access_denied&state="+url.QueryEscape(state), nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Fatalf("error callback with cookie %q: %d %q", cookie, resp.StatusCode, resp.Header.Get("Location"))
		}
		if e.flow.Pending() != 1 {
			t.Fatalf("an error callback with cookie %q ended the student's login", cookie)
		}
	}

	// The student's browser goes on to Panopto and back: connected.
	wantReturn(t, e.goOn(student, authorize), "alice", "")

	// From the student's own browser an error ends the login.
	student, _, state = e.startLogin(e.link("bob"))
	wantReturn(t, e.goOn(student, e.public.URL+"/redirect?error=access_denied&state="+url.QueryEscape(state)), "bob", "access_denied")
	if e.flow.Pending() != 0 {
		t.Fatal("the student's error callback did not end the login")
	}
}

// TestAuditKeepsWholeAccountNames: an audit line names the account whole, up
// to the longest account name there is: two accounts that share a 64-byte
// prefix never look alike in the log.
func TestAuditKeepsWholeAccountNames(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "sub"})
	prefix := strings.Repeat("s", 64)
	longest := strings.Repeat("L", token.MaxAccountLen)
	names := []string{prefix + "-alice", prefix + "-bob", longest}
	for _, n := range names {
		if code, out := e.connect(n, ""); code != http.StatusCreated {
			t.Fatalf("connect %d bytes: %d %v", len(n), code, out)
		}
	}
	got := map[string]bool{}
	for _, a := range e.audits() {
		got[a["account"].(string)] = true
	}
	for _, n := range names {
		if !got[n] {
			t.Errorf("no audit line names the %d-byte account whole; lines name %d distinct accounts", len(n), len(got))
		}
	}
	// A name longer than any account is cut at the limit, not before.
	e.follow(e.main.URL+"/-/login?account="+longest+"xyz", nil)
	for _, a := range e.audits() {
		if acct := a["account"].(string); strings.HasPrefix(acct, "LLL") && acct != longest {
			t.Errorf("an over-long name was logged as %d bytes, want %d", len(acct), token.MaxAccountLen)
		}
	}
}

// TestNoLoginURLThatAnswers403: with public_listen, public_url serves only
// ticketed logins, so neither GET /, /-/status, /-/status?account=,
// /-/ready nor an unconnected request offers a login URL there; each says
// to connect with POST /-/connect. An account's status says so in login
// mode without public_listen too (its /-/login needs a ticket).
func TestNoLoginURLThatAnswers403(t *testing.T) {
	e := newConnectEnv(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "sub"})
	get := func(path string, header ...string) (int, map[string]any, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.main.URL+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m, string(b)
	}
	for _, c := range []struct {
		path   string
		header []string
	}{
		{"/", nil},
		{"/-/status", nil},
		{"/-/status?account=alice", nil},
		{"/-/ready", nil},
		{"/Panopto/api/v1/whoami", nil},
		{"/Panopto/api/v1/whoami", []string{"X-Panopto-User", "alice"}},
	} {
		_, m, body := get(c.path, c.header...)
		if strings.Contains(body, "/-/login") {
			t.Errorf("%s %v offers a login URL: %s", c.path, c.header, body)
		}
		connect := m["connect"]
		if links, ok := m["links"].(map[string]any); ok {
			connect = links["connect"]
		}
		if connect != "POST /-/connect" {
			t.Errorf("%s %v does not say to connect with POST /-/connect: %s", c.path, c.header, body)
		}
	}
	_, _, page := get("/", "Accept", "text/html")
	if strings.Contains(page, "/-/login") || !strings.Contains(page, "POST /-/connect") {
		t.Errorf("the index page offers a login URL, or not POST /-/connect:\n%s", page)
	}
	if code, _, _ := e.follow(e.public.URL+"/-/login", nil); code != http.StatusForbidden {
		t.Fatalf("public /-/login: %d; the test's premise is gone", code)
	}

	// Login mode without public_listen: the operator's login works and is
	// offered; an account's is not.
	o := *e.h.Options()
	o.PublicListen, o.PublicURL = false, e.main.URL
	h := New(Deps{Accounts: e.pool, Flow: e.flow, Now: e.clk.Now}, o)
	for path, want := range map[string]string{"/-/status": "login_url", "/-/status?account=alice": "connect"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Host = "localhost"
		h.ServeHTTP(rec, req)
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		if m[want] == nil || (want == "connect") == strings.Contains(rec.Body.String(), "/-/login") {
			t.Errorf("%s without public_listen: %s, want %s", path, rec.Body.String(), want)
		}
	}
}

// Every hint an answer gives for connecting an account works in its mode:
// a login URL only where /-/login serves it, never one that answers 400 or
// 403.
func TestLoginHintPerMode(t *testing.T) {
	for _, c := range []struct {
		mode      token.AccountsMode
		public    bool
		account   string
		key, want string
	}{
		{token.AccountsOff, false, "", "login_url", "http://localhost:9127/-/login"},
		{token.AccountsOff, true, "", "connect", "POST /-/connect"},
		{token.AccountsLogin, false, "", "login_url", "http://localhost:9127/-/login"},
		{token.AccountsLogin, false, "alice", "connect", "POST /-/connect"},
		{token.AccountsLogin, true, "alice", "connect", "POST /-/connect"},
		{token.AccountsIdP, false, "", "login_url", "http://localhost:9127/-/login"},
		{token.AccountsIdP, false, "alice", "connect", idpHint},
	} {
		o := Options{AccountsMode: c.mode, PublicListen: c.public, PublicURL: "http://localhost:9127"}
		if key, got := o.loginHint(c.account); key != c.key || got != c.want {
			t.Errorf("mode %s, public_listen %v, account %q: %s=%q, want %s=%q", c.mode, c.public, c.account, key, got, c.key, c.want)
		}
	}
}
