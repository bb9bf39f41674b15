package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Every endpoint of both listeners answers a method it does not serve with
// 405, the Allow header naming the methods it does (GET ones serve HEAD
// too), and the JSON error body of every other refusal; nothing is
// forwarded. Without the shared secret the answer is 401 first, except on
// /-/healthz and /-/ready, which need none.
func TestEndpointsAnswerOtherMethods405(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up})
	public := httptest.NewServer(e.h.Public())
	t.Cleanup(public.Close)
	const guid = "6f3c2a1e-7b4d-4c1a-9e2f-000000000001"
	get := "GET, HEAD"
	for _, tc := range []struct {
		base, path, allow string
		methods           []string
	}{
		{e.srv.URL, "/", get, []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}},
		{e.srv.URL, "/-/healthz", get, []string{"POST", "PUT", "DELETE", "OPTIONS"}},
		{e.srv.URL, "/-/ready", get, []string{"POST", "DELETE"}},
		{e.srv.URL, "/-/status", get, []string{"POST", "PUT", "DELETE"}},
		{e.srv.URL, "/metrics", get, []string{"POST", "DELETE"}},
		{e.srv.URL, "/-/login", get, []string{"POST", "PUT", "DELETE"}},
		{e.srv.URL, "/redirect", get, []string{"POST", "PUT"}},
		{e.srv.URL, "/-/logout", "POST", []string{"GET", "HEAD", "PUT", "DELETE"}},
		{e.srv.URL, "/-/connect", "POST", []string{"GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"}},
		{e.srv.URL, "/-/accounts?state=disconnected", get, []string{"POST", "PUT", "DELETE"}},
		{e.srv.URL, "/-/accounts/alice", "DELETE, GET, HEAD", []string{"POST", "PUT", "PATCH", "OPTIONS"}},
		{e.srv.URL, "/-/uploads?folder_id=" + guid + "&name=a.mp4", "POST", []string{"GET", "HEAD", "PUT", "DELETE"}},
		{e.srv.URL, "/-/uploads/" + guid, get, []string{"POST", "PUT", "DELETE"}},
		{public.URL, "/-/healthz", get, []string{"POST", "DELETE"}},
		{public.URL, "/-/login?ticket=t", get, []string{"POST", "PUT"}},
		{public.URL, "/redirect", get, []string{"POST", "DELETE"}},
	} {
		for _, m := range tc.methods {
			t.Run(m+" "+tc.path, func(t *testing.T) {
				req, err := http.NewRequest(m, tc.base+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
					t.Fatalf("answered %d, Allow %q (want 405, %q): %s", resp.StatusCode, resp.Header.Get("Allow"), tc.allow, body)
				}
				if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("headers %v", resp.Header)
				}
				if m != http.MethodHead && jsonBody(t, body)["error"] != "method_not_allowed" {
					t.Errorf("body %s", body)
				}
			})
		}
	}
	if n := up.n.Load(); n != 0 {
		t.Fatalf("the upstream received %d requests", n)
	}

	o := *e.h.Options()
	o.SharedSecret = "inbound-secret-4c1a"
	e.h.Update(o)
	for _, tc := range []struct {
		method, path string
		secret       bool
		code         int
	}{
		{"DELETE", "/-/connect", false, http.StatusUnauthorized},
		{"DELETE", "/-/connect", true, http.StatusMethodNotAllowed},
		{"POST", "/-/status", false, http.StatusUnauthorized},
		{"POST", "/-/healthz", false, http.StatusMethodNotAllowed},
		{"POST", "/-/ready", false, http.StatusMethodNotAllowed},
	} {
		hdr := []string{}
		if tc.secret {
			hdr = []string{secretHeader, string(o.SharedSecret)}
		}
		if code, _, body := e.call(tc.method, tc.path, nil, hdr...); code != tc.code {
			t.Errorf("%s %s (secret %v) answered %d, want %d: %s", tc.method, tc.path, tc.secret, code, tc.code, body)
		}
	}
}

// The endpoints are matched on the decoded path exactly as written, as
// before they were patterns: the mux never cleans or redirects a path.
// What is not an endpoint goes to the forwarder, which refuses dot
// segments, empty segments and encoded slashes (400), forwards other paths
// byte for byte, and has no route for another casing of an endpoint. A name
// after /-/accounts/ or /-/uploads/ is the endpoint's to judge, slashes and
// dots included.
func TestEndpointPathsAsWritten(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	o := *e.h.Options()
	o.AccountsMode = token.AccountsLogin
	e.h.Update(o)
	host := "Host: " + e.addr() + "\r\n"
	for _, tc := range []struct {
		line string
		code int
		err  string
	}{
		{"GET /-//connect", 400, "bad_path"},
		{"POST /-//connect", 400, "bad_path"},
		{"GET //-/healthz", 400, "bad_path"},
		{"GET /-/../Panopto/api/v1/folders", 400, "bad_path"},
		{"GET /-/%2E%2E/Panopto/api/v1/folders", 400, "bad_path"},
		{"GET /-/status/../../Panopto/api/v1/folders", 400, "bad_path"},
		{"GET /-%2Fconnect", 405, "method_not_allowed"},
		{"GET /%2D/healthz", 200, ""},
		{"POST /-/CONNECT", 404, "no_route"},
		{"GET /-/Healthz", 404, "no_route"},
		{"GET /-/healthz/", 404, "no_route"},
		{"GET /-/nothing", 404, "no_route"},
		{"GET /-/accounts/a%2Fb", 400, "invalid_account"},
		{"GET /-/accounts/a/b", 400, "invalid_account"},
		{"GET /-/accounts/../connect", 400, "invalid_account"},
		{"GET /-/accounts/.", 400, "invalid_account"},
		{"GET /-/accounts/%2E%2E", 400, "invalid_account"},
		{"GET /-/accounts/", 404, "not_found"},
		{"POST /-/accounts/", 404, "not_found"},
		{"POST /-/accounts/a/b", 405, "method_not_allowed"},
		{"GET /-/uploads/a/b", 400, "bad_request"},
		{"GET /-/uploads/../x", 400, "bad_request"},
		{"GET /-/uploads/", 404, "not_found"},
		{"HEAD /-/uploads/abc", 400, ""},
		{"GET /-/uploads", 405, "method_not_allowed"},
		{"DELETE /-/accounts", 405, "method_not_allowed"},
	} {
		resp, body := rawRoundTrip(t, e.addr(), tc.line+" HTTP/1.1\r\n"+host+"Content-Length: 0\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != "" {
			t.Errorf("%s answered %d (Location %q), want %d: %s", tc.line, resp.StatusCode, resp.Header.Get("Location"), tc.code, body)
			continue
		}
		if tc.err != "" && jsonBody(t, body)["error"] != tc.err {
			t.Errorf("%s: %s, want error %s", tc.line, body, tc.err)
		}
	}
	if n := up.n.Load(); n != 0 {
		t.Fatalf("the upstream received %d requests", n)
	}
}

// With a route for "/", every path that is not an endpoint, /-/… in
// another casing included, reaches the upstream byte for byte as sent;
// unsafe ones are refused and reach nothing; the endpoints, the index
// aside, stay the sidecar's.
func TestCatchAllRouteForwardsAsSent(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true, routes: append(defaultRoutes(), Route{Prefix: "/"})})
	host := "Host: " + e.addr() + "\r\n"
	for _, target := range []string{
		"/", "/-/CONNECT", "/-/Healthz", "/-/healthz/", "/-/nothing", "/-/Accounts/alice",
		"/Panopto/api/v1/folders/x%2cy%7Ez%20w", "/panopto/API/v1/Folders", "/elsewhere/a%41b/C?x=%2F",
		"/-/status/x",
	} {
		before := up.n.Load()
		resp, body := rawRoundTrip(t, e.addr(), "GET "+target+" HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
		if resp.StatusCode != http.StatusOK || up.n.Load() != before+1 {
			t.Errorf("%s answered %d: %s", target, resp.StatusCode, body)
			continue
		}
		if got := up.last(t).RequestURI; got != target {
			t.Errorf("%s reached the upstream as %s", target, got)
		}
	}
	before := up.n.Load()
	for _, target := range []string{
		"/-//connect", "/-/../Panopto/api/v1/folders", "/a/./b", "/a%2Fb", "//x", "/Panopto/API/%2e%2e/x",
	} {
		resp, body := rawRoundTrip(t, e.addr(), "GET "+target+" HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "bad_path") {
			t.Errorf("%s answered %d: %s", target, resp.StatusCode, body)
		}
	}
	for _, target := range []string{"/-/status", "/-/healthz", "/metrics", "/-/accounts/alice"} {
		resp, body := rawRoundTrip(t, e.addr(), "GET "+target+" HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
		if resp.StatusCode == http.StatusOK && string(body) == `{"ok":true}` {
			t.Errorf("%s was forwarded", target)
		}
	}
	if n := up.n.Load(); n != before {
		t.Fatalf("the upstream received %d more requests", n-before)
	}
}
