package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestMatchRouteFirstPrefixWins(t *testing.T) {
	routes := []Route{
		{Prefix: "/Panopto/api/v1/special/", Inject: false},
		{Prefix: "/Panopto/api/", Inject: true},
		{Prefix: "/Panopto/Upload/", Inject: false},
	}
	for _, tc := range []struct {
		path   string
		exact  string // the route matched with RoutesExact; "" = no route
		folded string // with RoutesCaseInsensitive (and "")
	}{
		{"/Panopto/api/v1/special/x", "/Panopto/api/v1/special/", "/Panopto/api/v1/special/"},
		{"/Panopto/api/v1/specialx", "/Panopto/api/", "/Panopto/api/"},
		{"/Panopto/api/v1/folders", "/Panopto/api/", "/Panopto/api/"},
		{"/Panopto/Upload/abc/file.mp4", "/Panopto/Upload/", "/Panopto/Upload/"},
		{"/Panopto/api", "", ""},
		{"/panopto/api/v1/folders", "", "/Panopto/api/"},
		{"/PANOPTO/API/V1/SPECIAL/x", "", "/Panopto/api/v1/special/"},
		{"/panopto/upload/abc/File.MP4", "", "/Panopto/Upload/"},
		// ASCII letters only: "ſ" (U+017F) folds to "s" in Unicode, not in IIS.
		{"/Panopto/api/v1/\u017fpecial/x", "/Panopto/api/", "/Panopto/api/"},
		{"/Panopto/PublicAPI/REST/sessionUpload", "", ""},
		{"/", "", ""},
		{"", "", ""},
	} {
		for _, m := range []RoutesMatch{RoutesExact, RoutesCaseInsensitive, ""} {
			want := tc.folded
			if m == RoutesExact {
				want = tc.exact
			}
			got := matchRoute(routes, tc.path, m)
			switch {
			case want == "" && got != nil:
				t.Errorf("%q: matchRoute(%q) = %q, want no route", m, tc.path, got.Prefix)
			case want != "" && (got == nil || got.Prefix != want):
				t.Errorf("%q: matchRoute(%q) = %v, want %q", m, tc.path, got, want)
			}
		}
	}
	// The order decides, not the length of the prefix.
	rev := []Route{routes[1], routes[0]}
	if got := matchRoute(rev, "/Panopto/api/v1/special/x", ""); got == nil || got.Prefix != "/Panopto/api/" {
		t.Errorf("with the general route first, got %v", got)
	}
}

// Through the whole handler: the first matching route decides whether the
// bearer is injected; a path that matches nothing is answered 404 here and
// the upstream receives nothing at all.
func TestRoutesThroughHandler(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true, routes: []Route{
		{Prefix: "/Panopto/api/v1/open/", Inject: false},
		{Prefix: "/Panopto/api/", Inject: true},
		{Prefix: "/Panopto/Upload/", Inject: false},
	}})
	access, _ := e.storedTokens()
	const clientAuth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260302/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc"

	for _, tc := range []struct {
		path     string
		wantCode int
		wantAuth string // what the upstream sees; "" = not forwarded
	}{
		{"/Panopto/api/v1/folders", 200, "Bearer " + access},
		{"/Panopto/api/v1/open/thing", 200, clientAuth},
		{"/Panopto/Upload/x/y.mp4", 200, clientAuth},
		{"/Panopto/api", 404, ""},
		{"/Panopto/Other/x", 404, ""},
		{"/-/", 404, ""},
		{"/favicon.ico", 404, ""},
		{"/panopto/api/v1/folders", 200, "Bearer " + access}, // IIS's casing rules; RoutesExact: TestRoutesExactRefusesOddCasing
		{"/PANOPTO/upload/x/y.mp4", 200, clientAuth},
	} {
		t.Run(tc.path, func(t *testing.T) {
			before := up.n.Load()
			code, hdr, body := e.call(http.MethodGet, tc.path, nil, "Authorization", clientAuth)
			if code != tc.wantCode {
				t.Fatalf("answered %d, want %d: %s", code, tc.wantCode, body)
			}
			if tc.wantAuth == "" {
				if n := up.n.Load() - before; n != 0 {
					t.Fatalf("the upstream received %d requests for an unrouted path", n)
				}
				m := jsonBody(t, body)
				if m["error"] != "no_route" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
					t.Fatalf("404 answer is %q %v", hdr.Get("Content-Type"), m)
				}
				return
			}
			if n := up.n.Load() - before; n != 1 {
				t.Fatalf("the upstream received %d requests, want 1", n)
			}
			if got := up.last(t).Header.Get("Authorization"); got != tc.wantAuth {
				t.Fatalf("upstream saw Authorization %q, want %q", got, tc.wantAuth)
			}
		})
	}
	// "/" matches no route either: it answers the index page (see
	// TestIndex) and forwards nothing.
	before := up.n.Load()
	if code, _, body := e.call(http.MethodGet, "/", nil, "Authorization", clientAuth); code != http.StatusOK || jsonBody(t, body)["service"] != "panopto-sidecar" {
		t.Errorf("/ answered %d: %s", code, body)
	}
	if n := up.n.Load() - before; n != 0 {
		t.Errorf("the upstream received %d requests for /", n)
	}
}

// Headers on an inject route, sent byte for byte on a raw connection so the
// test controls exactly which hop-by-hop and forwarding headers arrive.
func TestInjectRouteHeaders(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	access, _ := e.storedTokens()

	req := "GET /Panopto/api/v1/folders/search?searchQuery=a%2Fb+c&pageSize=10&x= HTTP/1.1\r\n" +
		"Host: " + e.addr() + "\r\n" +
		"Authorization: Bearer client-supplied-token\r\n" +
		"Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n" +
		"Connection: keep-alive, X-Hop-Custom\r\n" +
		"X-Hop-Custom: must-not-pass\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"TE: deflate\r\n" +
		"Upgrade: h2c\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: evil.example\r\n" +
		"Forwarded: for=6.6.6.6;host=evil.example;proto=https\r\n" +
		"X-Panopto-User: someone-else\r\n" +
		"Cookie: panopto_sidecar_login=abc\r\n" +
		"X-Request-Id: keep-me\r\n" +
		"\r\n"
	resp, body := rawRoundTrip(t, e.addr(), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("answered %d: %s", resp.StatusCode, body)
	}
	got := up.last(t)
	checks := []struct {
		name, got, want string
	}{
		{"Host", got.Host, e.upURL.Host},
		{"request target", got.RequestURI, "/Panopto/api/v1/folders/search?searchQuery=a%2Fb+c&pageSize=10&x="},
		{"Authorization", got.Header.Get("Authorization"), "Bearer " + access},
		{"X-Forwarded-For", strings.Join(got.Header.Values("X-Forwarded-For"), ","), "127.0.0.1"},
		{"X-Forwarded-Proto", strings.Join(got.Header.Values("X-Forwarded-Proto"), ","), "http"},
		{"X-Forwarded-Host", strings.Join(got.Header.Values("X-Forwarded-Host"), ","), e.addr()},
		{"X-Request-Id", got.Header.Get("X-Request-Id"), "keep-me"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: upstream saw %q, want %q", c.name, c.got, c.want)
		}
	}
	for _, h := range []string{"Proxy-Authorization", "X-Hop-Custom", "Keep-Alive", "Te", "Upgrade", "Forwarded", "X-Panopto-User", "Cookie"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("%s was forwarded: %q", h, v)
		}
	}
	if c := got.Header.Get("Connection"); strings.Contains(strings.ToLower(c), "x-hop-custom") {
		t.Errorf("Connection forwarded as %q", c)
	}
}

// Upload routes carry the client's S3 signature, not a bearer, and every
// S3 detail (query parameters, ETag, Content-Length: 0) passes unchanged.
func TestUploadRoutePassesS3RequestsUntouched(t *testing.T) {
	up := &recordingUpstream{handle: func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("ETag", `"9b2cf535f27731c974343645a3985328"`)
		w.Header().Set("x-amz-request-id", "req-1")
		w.WriteHeader(http.StatusOK)
	}}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	const sig = "AWS4-HMAC-SHA256 Credential=dummy/20260302/us-east-1/s3/aws4_request, SignedHeaders=content-md5;host;x-amz-content-sha256;x-amz-date, Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"

	for _, tc := range []struct {
		name, method, target, body string
	}{
		{"initiate", "POST", "/Panopto/Upload/0b1c/video.mp4?uploads", ""},
		{"part", "PUT", "/Panopto/Upload/0b1c/video.mp4?partNumber=3&uploadId=2~Abc%2Fdef%3D", "part-bytes"},
		{"complete", "POST", "/Panopto/Upload/0b1c/video.mp4?uploadId=2~Abc%2Fdef%3D", "<CompleteMultipartUpload/>"},
		{"whole object", "PUT", "/Panopto/Upload/0b1c/manifest%20v1.xml", "<Session/>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nX-Amz-Date: 20260302T090000Z\r\n"+
				"X-Amz-Content-Sha256: UNSIGNED-PAYLOAD\r\nContent-Length: %d\r\n\r\n%s",
				tc.method, tc.target, e.addr(), sig, len(tc.body), tc.body)
			resp, body := rawRoundTrip(t, e.addr(), req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("answered %d: %s", resp.StatusCode, body)
			}
			if et := resp.Header.Get("ETag"); et != `"9b2cf535f27731c974343645a3985328"` {
				t.Errorf("ETag reached the client as %q", et)
			}
			got := up.last(t)
			if got.RequestURI != tc.target {
				t.Errorf("upstream request target %q, want %q", got.RequestURI, tc.target)
			}
			if a := got.Header.Get("Authorization"); a != sig {
				t.Errorf("upstream saw Authorization %q", a)
			}
			if d := got.Header.Get("X-Amz-Date"); d != "20260302T090000Z" {
				t.Errorf("upstream saw X-Amz-Date %q", d)
			}
			if string(got.Body) != tc.body {
				t.Errorf("upstream body %q, want %q", got.Body, tc.body)
			}
			if cl := got.Header.Get("Content-Length"); cl != fmt.Sprint(len(tc.body)) || len(got.TransferEncoding) != 0 {
				t.Errorf("upstream saw Content-Length %q, Transfer-Encoding %v; want %d", cl, got.TransferEncoding, len(tc.body))
			}
		})
	}
}

// With no grant the inject routes answer 503 with the login URL and forward
// nothing; the upload route needs no token and still works.
func TestNotConnected(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up})
	for _, p := range []string{"/Panopto/api/v1/folders", "/Panopto/PublicAPI/REST/sessionUpload"} {
		code, hdr, body := e.call(http.MethodGet, p, nil)
		if code != http.StatusServiceUnavailable {
			t.Fatalf("%s answered %d: %s", p, code, body)
		}
		m := jsonBody(t, body)
		if m["error"] != "panopto_not_connected" || m["login_url"] != e.srv.URL+"/-/login" {
			t.Errorf("%s: 503 body %v", p, m)
		}
		if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s: Content-Type %q", p, hdr.Get("Content-Type"))
		}
	}
	if n := up.n.Load(); n != 0 {
		t.Fatalf("the upstream received %d requests without a token", n)
	}
	if code, _, _ := e.call(http.MethodPut, "/Panopto/Upload/a/b.mp4", strings.NewReader("x")); code != http.StatusOK {
		t.Fatalf("upload route answered %d without a token", code)
	}
	if n := up.n.Load(); n != 1 {
		t.Fatalf("the upload route reached the upstream %d times, want 1", n)
	}
}
