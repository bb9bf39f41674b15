package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"reflect"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		raw  string // request target as sent
		want bool
	}{
		{"/Panopto/api/v1/folders", true},
		{"/Panopto/api/v1/folders/a%20b", true},
		{"/Panopto/api/v1/folders/...", true},
		{"/Panopto/api/v1/..x/x..", true},
		{"/Panopto/Upload/0b1c/video.mp4", true},
		{"/Panopto/Upload/0b1c/50%25%20done.mp4", true}, // a literal % in an S3 key
		{"/Panopto/api/%25252e%25252e/x", false},
		{"/Panopto/api/%25%32%65%25%32%65/x", false}, // %2e%2e spelled out: ".." after one more decoding
		{"/Panopto/api/../Upload/x", false},
		{"/Panopto/api/v1/./folders", false},
		{"/Panopto/api/v1/folders/..", false},
		{"/Panopto/api/v1/folders/.", false},
		{"/Panopto/api/%2e%2e/Upload/x", false},
		{"/Panopto/api/%2E%2E/Upload/x", false},
		{"/Panopto/api/.%2e/Upload/x", false},
		{"/Panopto/api/%2e/x", false},
		{"/Panopto/api/v1%2f..%2fUpload", false},
		{"/Panopto/api/v1%2F..%2FUpload", false},
		{"/Panopto/api/%252e%252e/Upload/x", false},
		{"/Panopto/api/%252f", false},
		{"/Panopto/api/v1/%5c..%5cUpload", false},
		{"/Panopto/api/v1/%5C", false},
		{"/Panopto/api/v1/%00", false},
		{"/Panopto/api/v1/%0d%0aX-Injected:%201", false},
		{"//Panopto/api/v1/folders", false},
		{"/Panopto/api//v1/folders", false},
		{"/Panopto/api/v1/folders//", false},
	} {
		u, err := url.ParseRequestURI(tc.raw)
		if err != nil {
			t.Fatalf("%q: %v", tc.raw, err)
		}
		if got := cleanPath(u.Path, u.EscapedPath()); got != tc.want {
			t.Errorf("cleanPath(%q, %q) = %v, want %v", u.Path, u.EscapedPath(), got, tc.want)
		}
	}
	// Literal backslashes (decoded) and relative paths.
	for _, p := range []string{`/Panopto/api/..\Upload`, `/Panopto/api/v1\x`, "Panopto/api/v1", ""} {
		if cleanPath(p, p) {
			t.Errorf("cleanPath(%q) accepted", p)
		}
	}
}

// Through the server: unsafe paths, absolute-form targets and CONNECT are
// answered 400 and nothing reaches the upstream.
func TestHostileTargetsAreRefused(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	host := "Host: " + e.addr() + "\r\n"
	for _, req := range []string{
		"GET /Panopto/api/../Upload/x HTTP/1.1\r\n",
		"GET /Panopto/api/%2e%2e/Upload/x HTTP/1.1\r\n",
		"GET /Panopto/api/v1%2f..%2f..%2fUpload HTTP/1.1\r\n",
		"GET /Panopto/api/%252e%252e/x HTTP/1.1\r\n",
		"GET /Panopto/api/v1/%5c..%5cx HTTP/1.1\r\n",
		"GET /Panopto/api/v1/..\\..\\x HTTP/1.1\r\n",
		"GET //Panopto/api/v1/folders HTTP/1.1\r\n",
		"GET /Panopto/api//v1/folders HTTP/1.1\r\n",
		"GET /Panopto/Upload/../api/v1/folders HTTP/1.1\r\n",
		"GET http://evil.example/Panopto/api/v1/folders HTTP/1.1\r\n",
		"GET http://" + e.addr() + "/Panopto/api/v1/folders HTTP/1.1\r\n",
		"GET https://" + e.upURL.Host + "/Panopto/api/v1/folders HTTP/1.1\r\n",
		"CONNECT evil.example:443 HTTP/1.1\r\n",
		"CONNECT " + e.upURL.Host + " HTTP/1.1\r\n",
	} {
		resp, body := rawRoundTrip(t, e.addr(), req+host+"Connection: close\r\n\r\n")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q answered %d: %s", firstLine(req), resp.StatusCode, body)
		}
	}
	// net/http answers "OPTIONS *" itself; it must not be forwarded either.
	rawRoundTrip(t, e.addr(), "OPTIONS * HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
	if n := up.n.Load(); n != 0 {
		t.Fatalf("the upstream received %d hostile requests", n)
	}
	// A dot-dot in the query is not a path and passes.
	resp, body := rawRoundTrip(t, e.addr(), "GET /Panopto/api/v1/folders/search?searchQuery=../../x HTTP/1.1\r\n"+host+"\r\n")
	if resp.StatusCode != http.StatusOK || up.last(t).RawQuery != "searchQuery=../../x" {
		t.Fatalf("a query with dots answered %d: %s", resp.StatusCode, body)
	}
}

// FuzzCleanPath: whatever request target the server parses, if cleanPath
// accepts it then the path has no dot segments even after a further
// decoding by the upstream, holds no backslash or NUL, path.Clean leaves it
// alone (bar a trailing slash), and the route it matches still prefixes
// its cleaned form.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/Panopto/api/v1/folders", "/Panopto/api/../Upload/x", "/Panopto/api/%2e%2e/x",
		"/Panopto/api/%252e%252e/x", "/Panopto/api/v1%2f..", "//Panopto/api/", "/Panopto/Upload/a%20b/c.mp4",
		"/Panopto/api/v1/.../x", "/Panopto/api/", "/Panopto/api/v1/%5c", "/Panopto/api/v1/\\..\\",
		// Odd casings route like IIS reads them, and must be as safe.
		"/panopto/API/v1/folders", "/PANOPTO/api/%2E%2E/Upload/x", "/panopto/publicapi/rest/../../Upload/x",
		"/Panopto/UPLOAD/a%20b/C.MP4", "/panopto/Api/v1%2F..%2Fx", "/Panopto/api/v1/\u017fessions",
	} {
		f.Add(s)
	}
	routes := defaultRoutes()
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		decoded, raw := u.Path, u.EscapedPath()
		if !cleanPath(decoded, raw) {
			return
		}
		if strings.ContainsAny(decoded, "\\\x00") {
			t.Fatalf("accepted %q (decoded %q): it holds a backslash or NUL", target, decoded)
		}
		// A literal % may stay (S3 keys hold one), but an upstream that
		// decodes once more must not find dots, slashes, backslashes or
		// NULs in it.
		if twice, err := url.PathUnescape(decoded); err == nil && twice != decoded {
			if strings.ContainsAny(twice, "\\\x00") || strings.Count(twice, "/") != strings.Count(decoded, "/") {
				t.Fatalf("accepted %q: a second decoding gives %q", target, twice)
			}
			for seg := range strings.SplitSeq(twice, "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("accepted %q: a second decoding gives the dot segment in %q", target, twice)
				}
			}
		}
		if again, err := url.PathUnescape(raw); err != nil || again != decoded {
			t.Fatalf("accepted %q: decoding %q gives %q (%v), not %q", target, raw, again, err, decoded)
		}
		for seg := range strings.SplitSeq(decoded, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted %q with a dot segment (decoded %q)", target, decoded)
			}
		}
		cleaned := path.Clean(decoded)
		if strings.HasSuffix(decoded, "/") && cleaned != "/" {
			cleaned += "/"
		}
		if cleaned != decoded {
			t.Fatalf("accepted %q: path.Clean changes %q to %q", target, decoded, cleaned)
		}
		if r := matchRoute(routes, decoded, RoutesExact); r != nil && !strings.HasPrefix(cleaned, r.Prefix) {
			t.Fatalf("accepted %q: route %q matches %q but not its cleaned form %q", target, r.Prefix, decoded, cleaned)
		}
		// In any casing, as IIS reads it.
		if r := matchRoute(routes, decoded, RoutesCaseInsensitive); r != nil &&
			!strings.EqualFold(cleaned[:min(len(cleaned), len(r.Prefix))], r.Prefix) {
			t.Fatalf("accepted %q: route %q matches %q in another casing but not its cleaned form %q", target, r.Prefix, decoded, cleaned)
		}
	})
}

// FuzzRewriteUploadTarget: rewriteUploadTarget never panics, keeps valid
// JSON valid, returns its input unchanged when it reports no change, and
// otherwise changes nothing but UploadTarget values that start with the
// upstream's origin.
func FuzzRewriteUploadTarget(f *testing.F) {
	const from, to = "https://upstream.example", "http://127.0.0.1:9127"
	for _, s := range []string{
		`{"ID":"a","UploadTarget":"https://upstream.example/Panopto/Upload/a","State":0}`,
		`{"UploadTarget":"https://upstream.example.evil/Panopto/Upload/a"}`,
		`{"UploadTarget":"https://upstream.example@evil.example/"}`,
		`{"uploadtarget":"HTTPS://UPSTREAM.EXAMPLE/x?y#z","n":1e400,"a":[{"UploadTarget":"https://upstream.example"}]}`,
		`[{"UploadTarget":"https://upstream.example/x"},{"UploadTarget":5}]`,
		`{"Desc":"<b>&</b> https://upstream.example/x","UploadTarget":"https://upstream.example/\u00e9"}`,
		`{"UploadTarget":"https://upstream.example/a"} {"x":1}`,
		`not json`, `{}`, `null`, `"https://upstream.example/x"`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		out, changed := rewriteUploadTarget(in, from, to)
		if !bytes.Equal(in, orig) {
			t.Fatal("the input was modified in place")
		}
		if !changed {
			if !bytes.Equal(out, in) {
				t.Fatalf("reported no change but returned %q for %q", out, in)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("rewrote input that is not JSON: %q", in)
		}
		if !json.Valid(out) {
			t.Fatalf("output is not valid JSON: %q", out)
		}
		a, b := decodeJSON(t, in), decodeJSON(t, out)
		if !sameButUploadTarget(a, b, from, to) {
			t.Fatalf("more than UploadTarget changed:\n in %q\nout %q", in, out)
		}
	})
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

// sameButUploadTarget reports whether out equals in except that UploadTarget
// strings starting with the origin from have it replaced by to.
func sameButUploadTarget(in, out any, from, to string) bool {
	switch a := in.(type) {
	case map[string]any:
		b, ok := out.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok {
				return false
			}
			if s, isStr := va.(string); isStr && strings.EqualFold(k, "UploadTarget") && hasOriginPrefix(s, from) {
				if vb != to+s[len(from):] {
					return false
				}
				continue
			}
			if !sameButUploadTarget(va, vb, from, to) {
				return false
			}
		}
		return true
	case []any:
		b, ok := out.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameButUploadTarget(a[i], b[i], from, to) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(in, out)
	}
}

func TestRewriteUploadTargetOrigins(t *testing.T) {
	const from, to = "https://upstream.example", "http://localhost:9127"
	for _, tc := range []struct{ in, want string }{
		{"https://upstream.example/Panopto/Upload/a", "http://localhost:9127/Panopto/Upload/a"},
		{"https://upstream.example", "http://localhost:9127"},
		{"https://upstream.example?x", "http://localhost:9127?x"},
		{"HTTPS://Upstream.Example/Panopto/Upload/a", "http://localhost:9127/Panopto/Upload/a"},
		{"https://upstream.example.evil/Panopto/Upload/a", ""},
		{"https://upstream.example:444/Panopto/Upload/a", ""},
		{"https://upstream.example@evil.example/x", ""},
		{"http://upstream.example/Panopto/Upload/a", ""},
		{"https://evil.example/https://upstream.example/", ""},
	} {
		body, _ := json.Marshal(map[string]any{"ID": "a", "UploadTarget": tc.in})
		out, changed := rewriteUploadTarget(body, from, to)
		if tc.want == "" {
			if changed || !bytes.Equal(out, body) {
				t.Errorf("%q was rewritten: %s", tc.in, out)
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil || !changed || m["UploadTarget"] != tc.want || m["ID"] != "a" {
			t.Errorf("%q: got %s (changed %v), want UploadTarget %q", tc.in, out, changed, tc.want)
		}
	}
}
