package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// TestPublicURLWithPathPrefix: public_url https://ontrack.example/panopto
// behind a reverse proxy. The login link and the redirect URI carry the
// prefix, the binding cookie is scoped to {prefix}/redirect (where the
// browser comes back), and the public listener serves its pages under the
// prefix as well as at the root, nothing more.
func TestPublicURLWithPathPrefix(t *testing.T) {
	e := newConnectEnvAt(t, token.AccountsLogin, ConnectOptions{IdentityClaim: "preferred_username"}, "/panopto")
	pub := e.public.URL + "/panopto"

	link := e.link("alice")
	if !strings.HasPrefix(link, pub+"/-/login?ticket=") {
		t.Fatalf("login_url %q is not under public_url %s", link, pub)
	}
	resp, err := browser().Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "redirect_uri="+strings.ReplaceAll(strings.ReplaceAll(pub, ":", "%3A"), "/", "%2F")+"%2Fredirect") {
		t.Fatalf("GET login_url: %d %q, want a 302 to authorize with redirect_uri %s/redirect", resp.StatusCode, resp.Header.Get("Location"), pub)
	}
	var cookiePath string
	for _, c := range resp.Cookies() {
		if c.Name == bindingCookie {
			cookiePath = c.Path
		}
	}
	if cookiePath != "/panopto/redirect" {
		t.Errorf("binding cookie path %q, want /panopto/redirect", cookiePath)
	}

	// A whole login under the prefix, as behind a proxy that passes the
	// path as is, comes back to OnTrack connected.
	_, loc, page := e.follow(e.link("bob"), nil)
	if loc == "" {
		t.Fatalf("login under the prefix ended on a page: %s", page)
	}
	wantReturn(t, loc, "bob", "")

	for _, c := range []struct {
		path string
		want int
	}{
		{"/-/healthz", 200},
		{"/panopto/-/healthz", 200},
		{"/panopto/-/status", 404},
		{"/panopto/-/connect", 404},
		{"/panopto/Panopto/api/v1/folders", 404},
		{"/panopto/metrics", 404},
		{"/panopto/", 404},
		{"/panoptox/-/healthz", 404},
		{"/other/-/healthz", 404},
	} {
		resp, err := http.Get(e.public.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s on the public listener: %d, want %d", c.path, resp.StatusCode, c.want)
		}
	}
	if n := e.fake.Stats().APICalls; n != 0 {
		t.Errorf("the public listener reached the API %d times", n)
	}
}
