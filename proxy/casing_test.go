package proxy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// newCasingEnv is a connected sidecar whose upstream records each request
// target as it arrives and hands the request to the Panopto stand-in, which
// routes paths as IIS does.
func newCasingEnv(t *testing.T) (*testEnv, *recordingUpstream) {
	t.Helper()
	var fake http.Handler
	up := &recordingUpstream{raw: func(w http.ResponseWriter, r *http.Request) { fake.ServeHTTP(w, r) }}
	e := newEnv(t, envConfig{upstream: up, connected: true, rewrite: true})
	fake = e.fake
	return e, up
}

// Routes match their prefix in any casing, as Panopto's IIS does, and the
// path reaches the upstream byte for byte as it was sent: same case, same
// escaping. sessionUpload in any casing gets its UploadTarget rewritten
// both ways.
func TestRoutesMatchAnyCasing(t *testing.T) {
	e, up := newCasingEnv(t)
	if e.h.Options().RoutesMatch != "" {
		t.Fatal("the default options are not the default match")
	}
	for _, tc := range []struct {
		target string
		code   int // 0: whatever Panopto answers
	}{
		{"/Panopto/api/v1/folders", 200},
		{"/panopto/api/v1/folders", 200},
		{"/PANOPTO/API/V1/FOLDERS?pageSize=1&pageNumber=0", 200},
		{"/panopto/Api/v1/folders/search?searchQuery=OnTrack", 200},
		{"/panopto/api/v1/whoami", 200},
		{"/panopto/API/v1/folders/x%2cy%7Ez%20w", 0},
		{"/Panopto/api/v1/Folders/%36f3c2a1e-7b4d-4c1a-9e2f-000000000001", 0},
	} {
		code, _, body := e.call(http.MethodGet, tc.target, nil)
		if tc.code != 0 && code != tc.code {
			t.Errorf("GET %s answered %d: %s", tc.target, code, body)
		}
		if got := up.last(t).RequestURI; got != tc.target {
			t.Errorf("GET %s reached the upstream as %s", tc.target, got)
		}
	}

	public := e.h.Options().PublicURL
	for _, create := range []string{
		"/Panopto/PublicAPI/REST/sessionUpload",
		"/Panopto/PublicAPI/Rest/sessionUpload",
		"/panopto/publicapi/rest/sessionupload",
		"/PANOPTO/PUBLICAPI/REST/SESSIONUPLOAD",
	} {
		t.Run(create, func(t *testing.T) {
			code, _, body := e.call(http.MethodPost, create, strings.NewReader(`{"FolderId":"6f3c2a1e-7b4d-4c1a-9e2f-000000000001"}`),
				"Content-Type", "application/json")
			if code != http.StatusCreated {
				t.Fatalf("create answered %d: %s", code, body)
			}
			if got := up.last(t).RequestURI; got != create {
				t.Errorf("reached the upstream as %s", got)
			}
			var u map[string]any
			if err := json.Unmarshal(body, &u); err != nil {
				t.Fatal(err)
			}
			id, _ := u["ID"].(string)
			if u["UploadTarget"] != public+"/Panopto/Upload/"+id {
				t.Fatalf("UploadTarget %v not rewritten to %s", u["UploadTarget"], public)
			}
			item := create + "/" + id
			code, _, body = e.call(http.MethodGet, item, nil)
			if code != http.StatusOK || !strings.Contains(string(body), `"UploadTarget":"`+public+"/Panopto/Upload/"+id+`"`) {
				t.Fatalf("GET %s answered %d: %s", item, code, body)
			}
			// The PUT echoes the rewritten object; Panopto takes it only
			// with its own UploadTarget, so the rewrite back must happen.
			u["State"] = 1
			put, _ := json.Marshal(u)
			code, _, body = e.call(http.MethodPut, item, strings.NewReader(string(put)), "Content-Type", "application/json")
			if code != http.StatusOK {
				t.Fatalf("PUT %s answered %d: %s", item, code, body)
			}
			if got := up.last(t).RequestURI; got != item {
				t.Errorf("PUT reached the upstream as %s", got)
			}
			if info, _ := e.fake.Upload(id); info.State != 1 && info.State != 3 {
				t.Errorf("the upload is in state %d after the PUT", info.State)
			}
		})
	}
}

// With routes_match: exact a path in another casing matches no route: 404,
// nothing forwarded. Case-insensitive routing can be switched off on reload.
func TestRoutesExactRefusesOddCasing(t *testing.T) {
	e, up := newCasingEnv(t)
	o := *e.h.Options()
	o.RoutesMatch = RoutesExact
	e.h.Update(o)
	for _, p := range []string{"/panopto/api/v1/folders", "/Panopto/API/v1/folders", "/Panopto/publicAPI/REST/sessionUpload", "/panopto/Upload/x/y.mp4"} {
		before := up.n.Load()
		code, _, body := e.call(http.MethodGet, p, nil)
		if code != http.StatusNotFound || jsonBody(t, body)["error"] != "no_route" {
			t.Errorf("exact: %s answered %d: %s", p, code, body)
		}
		if n := up.n.Load() - before; n != 0 {
			t.Errorf("exact: %s reached the upstream", p)
		}
	}
	if code, _, body := e.call(http.MethodGet, "/Panopto/api/v1/folders", nil); code != http.StatusOK {
		t.Errorf("exact: the configured casing answered %d: %s", code, body)
	}
	o.RoutesMatch = RoutesCaseInsensitive
	e.h.Update(o)
	if code, _, body := e.call(http.MethodGet, "/panopto/api/v1/folders", nil); code != http.StatusOK {
		t.Errorf("case_insensitive again: answered %d: %s", code, body)
	}
}

// Path safety holds whatever the casing, in either mode: nothing unsafe is
// forwarded.
func TestPathSafetyInAnyCasing(t *testing.T) {
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	host := "Host: " + e.addr() + "\r\n"
	for _, m := range []RoutesMatch{RoutesCaseInsensitive, RoutesExact} {
		o := *e.h.Options()
		o.RoutesMatch = m
		e.h.Update(o)
		for _, target := range []string{
			"/PANOPTO/API/%2E%2E/Upload/x",
			"/panopto/upload/../API/v1/folders",
			"/panopto/Api/v1%2F..%2F..%2Fupload",
			"/PaNoPtO/pUbLiCaPi/%252e%252e/x",
			"/panopto/api/v1/%5C..%5Cupload",
			"/Panopto/UPLOAD//x",
			"/panopto/api/./v1",
		} {
			resp, body := rawRoundTrip(t, e.addr(), "GET "+target+" HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: %s answered %d: %s", m, target, resp.StatusCode, body)
			}
		}
	}
	if n := up.n.Load(); n != 0 {
		t.Fatalf("the upstream received %d unsafe requests", n)
	}
}

func TestIsSessionUpload(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/Panopto/PublicAPI/REST/sessionUpload", true},
		{"/Panopto/PublicAPI/REST/sessionUpload/6f3c2a1e-7b4d-4c1a-9e2f-000000000001", true},
		{"/Panopto/PublicAPI/Rest/sessionUpload", true},
		{"/panopto/publicapi/rest/sessionupload", true},
		{"/PANOPTO/PUBLICAPI/REST/SESSIONUPLOAD/x", true},
		{"/Panopto/PublicAPI/REST/session", false},
		{"/Panopto/PublicAPI/REST/\u017fessionUpload", false}, // "ſ" is not "s" to IIS
		{"/Panopto/api/v1/folders", false},
	} {
		r := &http.Request{URL: &url.URL{Path: tc.path}}
		if got := isSessionUpload(r); got != tc.want {
			t.Errorf("isSessionUpload(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
