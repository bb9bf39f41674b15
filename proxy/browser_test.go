package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawCall sends req as written (Host and all) to addr and returns the
// status and the decoded JSON body's "error" ("" when there is none).
func rawCall(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer resp.Body.Close()
	var body struct {
		Error string `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body.Error
}

// browserEnv is a connected sidecar over a recording upstream whose
// options name a public_url and allowed hosts of their own.
func browserEnv(t *testing.T) *testEnv {
	t.Helper()
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}, connected: true})
	o := *e.h.Options()
	o.PublicURL = "https://connect.example"
	o.AllowedHosts = []string{"panopto-sidecar", "sidecar.internal:8443", "[fd00::7]"}
	e.h.Update(o)
	return e
}

// TestHostNotTheSidecarsIsMisdirected: a Host that names neither a
// loopback name, the address the connection came in on, public_url's host
// nor an allowed host is 421 and nothing is forwarded (a page that rebinds
// its own name to 127.0.0.1 cannot read an answer); the sidecar's names
// pass on every endpoint.
func TestHostNotTheSidecarsIsMisdirected(t *testing.T) {
	e := browserEnv(t)
	addr := e.srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	cases := []struct {
		host string // "-" sends no Host line (HTTP/1.0)
		want int
	}{
		{addr, 200},
		{"localhost:" + port, 200},
		{"LocalHost:" + port, 200},
		{"localhost", 200},
		{"[::1]:" + port, 200},
		{"127.0.0.1:1", 200},
		{"[::ffff:127.0.0.1]:" + port, 200}, // the connection's own address, IPv4-mapped
		{"connect.example", 200},            // public_url's host
		{"connect.example:8080", 200},
		{"panopto-sidecar:9127", 200}, // allowed, any port
		{"Panopto-Sidecar", 200},
		{"sidecar.internal:8443", 200},
		{"[fd00::7]:9127", 200},
		{"-", 200},
		{"sidecar.internal:9127", 421}, // allowed with another port only
		{"evil.example:" + port, 421},
		{"evil.example", 421},
		{"127.0.0.2:" + port, 421},
		{"localhost.evil.example:" + port, 421},
		{"127.0.0.1.evil.example", 421},
		{"panopto-sidecar.evil.example", 421},
		{"connect.example.evil.example", 421},
	}
	for _, tc := range cases {
		for _, path := range []string{"/Panopto/api/v1/folders", "/-/status", "/-/healthz", "/-/ready", "/metrics", "/"} {
			before := e.up.n.Load()
			req := "GET " + path + " HTTP/1.1\r\nHost: " + tc.host + "\r\nConnection: close\r\n\r\n"
			if tc.host == "-" {
				req = "GET " + path + " HTTP/1.0\r\n\r\n"
			}
			code, errCode := rawCall(t, addr, req)
			if tc.want == 421 {
				if code != 421 || errCode != "misdirected_request" {
					t.Errorf("Host %q, %s: %d %q, want 421 misdirected_request", tc.host, path, code, errCode)
				}
				if n := e.up.n.Load() - before; n != 0 {
					t.Errorf("Host %q, %s: the upstream received %d requests", tc.host, path, n)
				}
			} else if code == 421 {
				t.Errorf("Host %q, %s: 421, want it served", tc.host, path)
			}
		}
	}
	if !strings.Contains(e.logs.String(), `"host":"evil.example:`+port+`"`) {
		t.Errorf("the refusal's log line does not name the Host:\n%s", e.logs.String())
	}
}

// TestCrossSiteRequestsRefused: a request a browser says comes from another
// site's page (Origin other than the sidecar's, Sec-Fetch-Site cross-site
// or same-site) is 403 on every endpoint, and acts on nothing; only GET and
// HEAD navigations to /, /-/login, /redirect, /-/status and /-/healthz are
// let through (Panopto's redirect back is one). Requests without those
// headers (curl, Ruby, Go) and the sidecar's own pages pass.
func TestCrossSiteRequestsRefused(t *testing.T) {
	e := browserEnv(t)
	addr := e.srv.Listener.Addr().String()
	own := "http://" + addr
	endpoints := []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/-/login"},
		{"GET", "/redirect?code=x&state=y"},
		{"GET", "/-/status"},
		{"GET", "/-/healthz"},
		{"GET", "/-/ready"},
		{"GET", "/metrics"},
		{"POST", "/-/logout"},
		{"POST", "/-/connect"},
		{"GET", "/-/accounts/alice"},
		{"DELETE", "/-/accounts/alice"},
		{"POST", "/-/uploads?name=a.mp4"}, // no folder_id: nothing is uploaded when served
		{"GET", "/-/uploads/6f3c2a1e-7b4d-4c1a-9e2f-000000000002"},
		{"GET", "/Panopto/api/v1/folders"},
		{"POST", "/Panopto/PublicAPI/REST/sessionUpload"},
	}
	foreign := []string{
		"Origin: https://evil.example",
		"Origin: null",
		"Origin: http://" + addr + ".evil.example",
		"Origin: https://" + addr, // another scheme is another origin
		"Sec-Fetch-Site: cross-site",
		"Sec-Fetch-Site: same-site",
		"Origin: " + own + "\r\nSec-Fetch-Site: cross-site",
		"Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors",
		"Origin: " + own + "\r\nOrigin: https://evil.example",
	}
	navigable := map[string]bool{"/": true, "/-/login": true, "/redirect": true, "/-/status": true, "/-/healthz": true}
	send := func(method, path, hdr string) (int, string) {
		t.Helper()
		body := ""
		if method == "POST" {
			body = "{}"
		}
		return rawCall(t, addr, method+" "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n"+hdr+"\r\n"+
			"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	}
	for _, ep := range endpoints {
		bare, _, _ := strings.Cut(ep.path, "?")
		for _, h := range foreign {
			before := e.up.n.Load()
			if code, errCode := send(ep.method, ep.path, h); code != 403 || errCode != "cross_origin_refused" {
				t.Errorf("%s %s with %q: %d %q, want 403 cross_origin_refused", ep.method, bare, h, code, errCode)
			}
			if n := e.up.n.Load() - before; n != 0 {
				t.Errorf("%s %s with %q: the upstream received %d requests", ep.method, bare, h, n)
			}
		}
		// A navigation from another site: a link or Panopto's redirect
		// back (GET), or a form's submission (POST).
		nav := "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nOrigin: https://evil.example"
		code, _ := send(ep.method, ep.path, nav)
		if want := ep.method == "GET" && navigable[bare]; want != (code != 403) {
			t.Errorf("%s %s as a cross-site navigation: %d", ep.method, bare, code)
		}
		if ep.method == "GET" && navigable[bare] {
			if code, _ := send("HEAD", ep.path, nav); code == 403 {
				t.Errorf("HEAD %s as a cross-site navigation: 403", bare)
			}
		}
		if code, _ := send(ep.method, ep.path, "Sec-Fetch-Site: same-site\r\nSec-Fetch-Mode: cors"); code != 403 {
			t.Errorf("%s %s as a same-site fetch: %d", ep.method, bare, code)
		}
		for _, h := range []string{
			"X-Client: curl",
			"Origin: " + own + "\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors",
			"Origin: " + strings.ToUpper(own),
			"Origin: https://connect.example", // public_url
			"Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate",
		} {
			if ep.method == "POST" && bare == "/-/logout" || ep.method == "DELETE" {
				continue // would act; covered below
			}
			if code, _ := send(ep.method, ep.path, h); code == 403 {
				t.Errorf("%s %s with %q: 403, want it served", ep.method, bare, h)
			}
		}
	}
	if st := e.m.Status(); !st.Connected {
		t.Fatalf("a refused request changed the grant: %+v", st)
	}
	if code, _ := send("POST", "/-/logout", "Origin: "+own+"\r\nSec-Fetch-Site: same-origin"); code != 200 {
		t.Errorf("POST /-/logout from the sidecar's own origin: %d", code)
	}
}

// TestSimpleContentTypesRefused: the endpoints that act take no body a
// page of another site could send without a CORS preflight: /-/connect,
// /-/logout and DELETE /-/accounts/… need application/json; /-/uploads
// refuses text/plain, form and multipart bodies, and takes any other type
// or none.
func TestSimpleContentTypesRefused(t *testing.T) {
	e := browserEnv(t)
	addr := e.srv.Listener.Addr().String()
	const upload = "/-/uploads?name=a.mp4" // no folder_id: a 400 once the type passes, nothing uploaded
	cases := []struct {
		method, path, ctype string // ctype "-": no Content-Type
		refused             bool
	}{
		{"POST", "/-/logout", "-", true},
		{"POST", "/-/logout", "", true},
		{"POST", "/-/logout", "text/plain", true},
		{"POST", "/-/logout", "application/x-www-form-urlencoded", true},
		{"POST", "/-/logout", "multipart/form-data; boundary=x", true},
		{"POST", "/-/logout", "application/jsonx", true},
		{"POST", "/-/connect", "-", true},
		{"POST", "/-/connect", "text/plain;charset=UTF-8", true},
		{"POST", "/-/connect", "application/json", false},
		{"POST", "/-/connect", "Application/JSON; charset=utf-8", false},
		{"DELETE", "/-/accounts/alice", "-", true},
		{"DELETE", "/-/accounts/alice", "text/plain", true},
		{"DELETE", "/-/accounts/alice", "application/json", false},
		{"GET", "/-/accounts/alice", "-", false},
		{"GET", "/-/connect", "-", false},
		{"POST", upload, "text/plain", true},
		{"POST", upload, "TEXT/PLAIN; charset=utf-8", true},
		{"POST", upload, "application/x-www-form-urlencoded", true},
		{"POST", upload, "multipart/form-data; boundary=----x", true},
		{"POST", upload, " text/plain ;", true},
		{"POST", upload, "video/mp4", false},
		{"POST", upload, "application/octet-stream", false},
		{"POST", upload, "-", false},
		{"POST", "/Panopto/api/v1/folders", "text/plain", false},
	}
	for _, tc := range cases {
		before := e.up.n.Load()
		ct := "Content-Type: " + tc.ctype + "\r\n"
		if tc.ctype == "-" {
			ct = ""
		}
		body := "x"
		code, errCode := rawCall(t, addr, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: "+addr+"\r\n"+ct+
			"Content-Length: 1\r\nConnection: close\r\n\r\n"+body)
		if tc.refused {
			if code != 415 || errCode != "unsupported_media_type" {
				t.Errorf("%s %s %q: %d %q, want 415", tc.method, tc.path, tc.ctype, code, errCode)
			}
			if n := e.up.n.Load() - before; n != 0 {
				t.Errorf("%s %s %q: the upstream received %d requests", tc.method, tc.path, tc.ctype, n)
			}
		} else if code == 415 {
			t.Errorf("%s %s %q: 415, want it served", tc.method, tc.path, tc.ctype)
		}
	}
	if st := e.m.Status(); !st.Connected {
		t.Fatalf("a refused logout changed the grant: %+v", st)
	}
}

// TestPublicListenerNotChecked: the public listener is for browsers behind
// whatever name the operator gives it (an Ingress sets its own Host), so
// neither check applies there.
func TestPublicListenerNotChecked(t *testing.T) {
	e := browserEnv(t)
	pub := httptest.NewServer(e.h.Public())
	defer pub.Close()
	addr := strings.TrimPrefix(pub.URL, "http://")
	code, _ := rawCall(t, addr, "GET /-/healthz HTTP/1.1\r\nHost: panopto-connect.ontrack.example\r\n"+
		"Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n")
	if code != 200 {
		t.Errorf("public /-/healthz by another name from another site: %d", code)
	}
}
