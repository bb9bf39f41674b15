package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// GET / answers JSON to a program and a page to a browser, both saying
// whether the sidecar is connected and where to go, and neither holding a
// secret.
func TestIndex(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}})
	const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	login := e.h.Options().PublicURL + "/-/login"

	check := func(connected bool) {
		t.Helper()
		code, hdr, body := e.call(http.MethodGet, "/", nil)
		if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("JSON: answered %d %q: %s", code, hdr.Get("Content-Type"), body)
		}
		if !strings.Contains(hdr.Get("Vary"), "Accept") || hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("JSON: Vary %q, Cache-Control %q", hdr.Get("Vary"), hdr.Get("Cache-Control"))
		}
		m := jsonBody(t, body)
		links, _ := m["links"].(map[string]any)
		if m["connected"] != connected || m["upstream"] != e.upURL.String() || links["login"] != login ||
			links["status"] != "/-/status" || links["healthz"] != "/-/healthz" || links["metrics"] != "/metrics" ||
			links["readme"] != "https://github.com/doubtfire-lms/panopto-sidecar#readme" {
			t.Errorf("JSON: %s", body)
		}

		code, hdr, body = e.call(http.MethodGet, "/", nil, "Accept", browserAccept)
		page := string(body)
		if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
			t.Fatalf("HTML: answered %d %q: %s", code, hdr.Get("Content-Type"), body)
		}
		if !strings.Contains(hdr.Get("Vary"), "Accept") || hdr.Get("Cache-Control") != "no-store" ||
			!strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("HTML: headers %v", hdr)
		}
		for _, want := range []string{
			`href="` + login + `"`, `href="/-/status"`, `href="/-/healthz"`, `href="/metrics"`,
			`href="https://github.com/doubtfire-lms/panopto-sidecar#readme"`,
		} {
			if !strings.Contains(page, want) {
				t.Errorf("HTML: no %s in\n%s", want, page)
			}
		}
		if got := strings.Contains(page, "<p>Connected to Panopto"); got != connected || strings.Contains(page, "Not connected") == connected {
			t.Errorf("HTML: connected %v, page\n%s", connected, page)
		}
		for _, s := range e.fake.Secrets() {
			if s != "" && (strings.Contains(page, s) || strings.Contains(string(body), s)) {
				t.Errorf("the index holds a secret")
			}
		}
	}
	check(false)
	e.login()
	check(true)

	resp := e.do(mustRequest(t, http.MethodHead, e.srv.URL+"/"))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) != 0 {
		t.Errorf("HEAD / answered %d with %d bytes", resp.StatusCode, len(b))
	}
	code, hdr, body := e.call(http.MethodPost, "/", strings.NewReader("x"))
	if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST / answered %d (Allow %q): %s", code, hdr.Get("Allow"), body)
	}
	// Only "/" itself: anything else unknown stays a JSON 404, even for a
	// browser, and nothing is forwarded.
	for _, p := range []string{"/index.html", "/-/", "/-/index", "/x/"} {
		code, hdr, body := e.call(http.MethodGet, p, nil, "Accept", browserAccept)
		if code != http.StatusNotFound || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s answered %d %q: %s", p, code, hdr.Get("Content-Type"), body)
		}
	}
	if n := e.up.n.Load(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
}

// With a shared secret the index is behind it, like /-/status; only
// /-/healthz and /-/ready answer without it.
func TestIndexNeedsTheSharedSecret(t *testing.T) {
	const secret = "inbound-secret-0e4a"
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}, secret: secret, connected: true})
	for _, accept := range []string{"", "text/html"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			for _, sent := range []string{"", "wrong"} {
				req := mustRequest(t, method, e.srv.URL+"/")
				if sent != "" {
					req.Header.Set(secretHeader, sent)
				}
				if accept != "" {
					req.Header.Set("Accept", accept)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "connected") ||
					strings.Contains(string(b), "/-/login") {
					t.Errorf("%s / (Accept %q, secret %q) answered %d: %s", method, accept, sent, resp.StatusCode, b)
				}
			}
		}
		code, _, body := e.call(http.MethodGet, "/", nil, "Accept", accept)
		if code != http.StatusOK || !strings.Contains(string(body), "onnected") {
			t.Errorf("with the secret, GET / (Accept %q) answered %d: %s", accept, code, body)
		}
		if strings.Contains(string(body), secret) {
			t.Error("the index shows the shared secret")
		}
	}
	// The probes still need no secret.
	resp, err := e.srv.Client().Get(e.srv.URL + "/-/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/-/healthz without the secret answered %d", resp.StatusCode)
	}
}

// An operator who routes "/" itself keeps it forwarded.
func TestIndexGivesWayToARouteForSlash(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, routes: []Route{{Prefix: "/", Inject: false}}})
	code, _, body := e.call(http.MethodGet, "/", nil, "Accept", "text/html")
	if code != http.StatusOK || string(body) != `{"ok":true}` || up.last(t).RequestURI != "/" {
		t.Errorf("GET / answered %d: %s", code, body)
	}
}

func mustRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
