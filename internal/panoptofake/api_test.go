package panoptofake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

type results struct {
	Results []map[string]any
}

func (e *env) list(path, tok string) (int, []string) {
	e.t.Helper()
	st, b := e.do(http.MethodGet, path, tok, nil)
	var r results
	if st == 200 {
		if err := json.Unmarshal(b, &r); err != nil {
			e.t.Fatalf("%s: %v", path, err)
		}
	}
	var names []string
	for _, x := range r.Results {
		names = append(names, x["Name"].(string))
	}
	return st, names
}

func TestFoldersAndSessions(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	tests := []struct {
		path   string
		status int
		want   []string
	}{
		{"/Panopto/api/v1/folders", 200, []string{"OnTrack Uploads", "COS10009 Introduction to Programming", "SIT305 Mobile Application Development", "Staff Recordings"}},
		{"/Panopto/api/v1/folders?pageSize=3&pageNumber=0", 200, []string{"OnTrack Uploads", "COS10009 Introduction to Programming", "SIT305 Mobile Application Development"}},
		{"/Panopto/api/v1/folders?pageSize=3&pageNumber=1", 200, []string{"Staff Recordings"}},
		{"/Panopto/api/v1/folders?pageSize=3&pageNumber=2", 200, nil},
		{"/Panopto/api/v1/folders?pageSize=0", 400, nil},
		{"/Panopto/api/v1/folders?pageNumber=-1", 400, nil},
		{"/Panopto/api/v1/folders/search?searchQuery=cos10009", 200, []string{"COS10009 Introduction to Programming"}},
		{"/Panopto/api/v1/folders/search?searchQuery=" + url.QueryEscape("zzz"), 200, nil},
		{"/Panopto/api/v1/folders/search", 400, nil},
		{"/Panopto/api/v1/folders/" + FolderOnTrack + "/children", 200, []string{"COS10009 Introduction to Programming", "SIT305 Mobile Application Development"}},
		{"/Panopto/api/v1/folders/00000000-0000-0000-0000-000000000000/children", 200, []string{"OnTrack Uploads", "Staff Recordings"}},
		{"/Panopto/api/v1/folders/" + FolderCOS10009 + "/sessions", 200, []string{"Week 1 Lecture", "Week 2 Lecture"}},
		{"/Panopto/api/v1/folders/" + FolderCOS10009 + "/sessions?pageSize=1&pageNumber=1", 200, []string{"Week 2 Lecture"}},
		{"/Panopto/api/v1/folders/" + newGUID() + "/sessions", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st, names := e.list(tt.path, tok)
			if st != tt.status || strings.Join(names, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %d %q, want %d %q", st, names, tt.status, tt.want)
			}
		})
	}

	st, b := e.do(http.MethodGet, "/Panopto/api/v1/folders/"+FolderCOS10009, tok, nil)
	var f map[string]any
	_ = json.Unmarshal(b, &f)
	if st != 200 || f["Id"] != FolderCOS10009 || f["ParentFolder"].(map[string]any)["Id"] != FolderOnTrack {
		t.Fatalf("folder: %d %s", st, b)
	}
	if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/folders/"+newGUID(), tok, nil); st != 404 {
		t.Fatalf("unknown folder: %d", st)
	}
	st, b = e.do(http.MethodGet, "/Panopto/api/v1/sessions/8a1d0c52-3e4f-4b6a-8c7d-000000000011", tok, nil)
	if st != 200 || !bytes.Contains(b, []byte(`"Name":"Week 1 Lecture"`)) {
		t.Fatalf("session: %d %s", st, b)
	}
	if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/nothing/here", tok, nil); st != 404 {
		t.Fatalf("unknown route: %d", st)
	}
}

func TestBearerRequired(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		method  string
		forbid  bool
		bearer  func(e *env) string
		wantErr int
	}{
		{"api none", "/Panopto/api/v1/folders", "GET", false, func(*env) string { return "" }, 401},
		{"api unknown", "/Panopto/api/v1/folders", "GET", false, func(*env) string { return "bogus" }, 401},
		{"api unknown with 403 option", "/Panopto/api/v1/folders", "GET", true, func(*env) string { return "bogus" }, 401},
		{"api unknown route", "/Panopto/api/v1/nothing", "GET", false, func(*env) string { return "" }, 401},
		{"publicapi none", "/Panopto/PublicAPI/REST/sessionUpload/" + newGUID(), "GET", false, func(*env) string { return "" }, 401},
		{"publicapi none 403", "/Panopto/PublicAPI/REST/sessionUpload/" + newGUID(), "GET", true, func(*env) string { return "" }, 403},
		{"publicapi expired 403", "/Panopto/PublicAPI/REST/sessionUpload/" + newGUID(), "GET", true, func(e *env) string {
			tok := e.login().str("access_token")
			e.s.ExpireAllAccessTokens()
			return tok
		}, 403},
		{"no api scope", "/Panopto/api/v1/folders", "GET", false, func(e *env) string {
			code := e.code(func(v url.Values) { v.Set("scope", "openid offline_access") })
			tr := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {testVerifier}}, true)
			return tr.str("access_token")
		}, 403},
		{"revoked", "/Panopto/api/v1/whoami", "GET", false, func(e *env) string {
			tr := e.login()
			e.post("/Panopto/oauth2/connect/revocation", url.Values{"token": {tr.str("access_token")}}, true)
			return tr.str("access_token")
		}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.PublicAPI403 = tt.forbid })
			tok := tt.bearer(e)
			st, b := e.do(tt.method, tt.path, tok, nil)
			if st != tt.wantErr || !json.Valid(b) {
				t.Fatalf("got %d %s, want %d JSON", st, b, tt.wantErr)
			}
			s := e.s.Stats()
			if tt.wantErr == 401 && s.Unauthorized != 1 || tt.wantErr == 403 && s.Forbidden != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestAPIFaults(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	e.s.InjectAPIFaults(FaultStatus(http.StatusTooManyRequests), FaultStatus(http.StatusBadGateway))
	for _, want := range []int{429, 502, 200} {
		if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/folders", tok, nil); st != want {
			t.Fatalf("got %d, want %d", st, want)
		}
	}
}

func TestWhoamiPerUser(t *testing.T) {
	e := newEnv(t, nil)
	for _, user := range []string{"", "student-1", "tutor-7"} {
		code := e.code(func(v url.Values) {
			if user != "" {
				v.Set("login_hint", user)
			}
		})
		tr := e.post("/Panopto/oauth2/connect/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {testRedirect}, "code_verifier": {testVerifier}}, true)
		_, b := e.do(http.MethodGet, "/Panopto/api/v1/whoami", tr.str("access_token"), nil)
		var who map[string]any
		_ = json.Unmarshal(b, &who)
		want := user
		if want == "" {
			want = "panopto-admin"
		}
		if who["User"] != want || who["GrantType"] != "authorization_code" || who["GrantId"] == "" {
			t.Fatalf("whoami %s, want user %s", b, want)
		}
	}
}

// TestEchoStreams proves the echo endpoint answers before the request body
// ends: the client reads its first chunk back while still holding the rest.
func TestEchoStreams(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/Panopto/api/v1/echo", pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-test")
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := e.c.Do(req)
		done <- result{resp, err}
	}()
	if _, err := pw.Write([]byte("first chunk;")); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no response headers while the body is still open: echo buffers")
	}
	if res.err != nil || res.resp.StatusCode != 200 || res.resp.Header.Get("Content-Type") != "application/x-test" {
		t.Fatalf("%v %v", res.resp, res.err)
	}
	defer res.resp.Body.Close()
	got := make([]byte, len("first chunk;"))
	if _, err := io.ReadFull(res.resp.Body, got); err != nil || string(got) != "first chunk;" {
		t.Fatalf("first chunk back: %q %v", got, err)
	}
	_, _ = pw.Write([]byte("second"))
	pw.Close()
	rest, _ := io.ReadAll(res.resp.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

func TestStream(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.login().str("access_token")
	const n = 3<<20 + 17
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/Panopto/api/v1/stream?bytes="+strconv.Itoa(n), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != n {
		t.Fatalf("Content-Length %d", resp.ContentLength)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(PatternReader(n))
	if !bytes.Equal(got, want) || len(got) != n {
		t.Fatalf("stream data differs (len %d)", len(got))
	}
	for _, bad := range []string{"-1", "x", "2000000000000"} {
		if st, _ := e.do(http.MethodGet, "/Panopto/api/v1/stream?bytes="+bad, tok, nil); st != 400 {
			t.Fatalf("bytes=%s: %d", bad, st)
		}
	}
}

func TestPatternReaderSeek(t *testing.T) {
	p := PatternReader(1000)
	if _, err := p.Seek(500, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(p)
	if len(b) != 500 || b[0] != byte(500%251) || b[499] != byte(999%251) {
		t.Fatalf("after seek: len %d first %d", len(b), b[0])
	}
	if pos, _ := p.Seek(-10, io.SeekEnd); pos != 990 {
		t.Fatalf("SeekEnd %d", pos)
	}
	if _, err := p.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("negative seek accepted")
	}
}
