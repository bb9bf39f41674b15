package config

import (
	"strings"
	"testing"
)

// TestPublicURLPath: public_url may name a path prefix (a reverse proxy
// serving the login pages under it); the redirect URI and the login link
// carry it. A path that a proxy or a browser would rewrite is refused.
func TestPublicURLPath(t *testing.T) {
	for _, tc := range []struct {
		yaml, problem string
	}{
		{"public_url: https://ontrack.example/panopto", ""},
		{"public_url: https://ontrack.example/panopto/", ""},
		{"public_url: https://ontrack.example:8443/lms/panopto", ""},
		{"public_url: https://ontrack.example/panopto//", ""}, // trailing slashes trimmed
		{"public_url: https://ontrack.example//panopto", "public_url: path must be clean"},
		{"public_url: https://ontrack.example/a/../panopto", "public_url: path must be clean"},
		{"public_url: https://ontrack.example/./panopto", "public_url: path must be clean"},
		{"public_url: https://ontrack.example/pan%20opto", "public_url: path must be plain"},
		{"public_url: https://ontrack.example/pan;opto", "public_url: path must be plain"},
		{`public_url: 'https://ontrack.example/pan\opto'`, "public_url: path must be plain"},
		{"public_url: https://ontrack.example/panopto?x=1", "public_url: must have no query or fragment"},
		{"public_url: https://ontrack.example/panopto#x", "public_url: must have no query or fragment"},
		{"public_url: https://u:p@ontrack.example/panopto", "public_url: must not hold a user name"},
		{"public_url: https://ontrack.example/panopto\nrewrite_upload_target: true", "rewrite_upload_target: needs public_url without a path"},
		{"public_url: https://ontrack.example\nrewrite_upload_target: true", ""},
	} {
		_, err := Parse([]byte(tc.yaml), nil)
		switch {
		case tc.problem == "" && err != nil:
			t.Errorf("%q: %v", tc.yaml, err)
		case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.problem)
		}
	}
	c, err := Parse([]byte("public_url: https://ontrack.example/panopto/\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := []string{c.PublicURL, c.RedirectURL(), c.LoginURL()}, []string{
		"https://ontrack.example/panopto", "https://ontrack.example/panopto/redirect", "https://ontrack.example/panopto/-/login",
	}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
}
