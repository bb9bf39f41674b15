package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// logLines returns the JSON log lines whose msg is msg.
func (e *testEnv) logLines(msg string) []map[string]any {
	e.t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// lastLogLine returns the last log line whose msg is msg.
func (e *testEnv) lastLogLine(msg string) map[string]any {
	e.t.Helper()
	lines := e.logLines(msg)
	if len(lines) == 0 {
		e.t.Fatalf("no %q log line in:\n%s", msg, e.logs.String())
	}
	return lines[len(lines)-1]
}

// A refused request is logged with its path as the client sent it, still
// escaped: "%2F" must not show as the "/" it decodes to, or a refusal looks
// like a valid request turned away. The query never reaches the log.
func TestRefusedRequestsLogTheRawPath(t *testing.T) {
	const ticket = "tkt-3b7e91d04c"
	up := &recordingUpstream{}
	e := newEnv(t, envConfig{upstream: up})
	host := "Host: " + e.addr() + "\r\n"
	for _, tc := range []struct {
		name, target string
		code         int
		msg, path    string
	}{
		{"encoded slash", "/Panopto/api/v1/folders%2F..%2Fx?ticket=" + ticket, http.StatusBadRequest,
			"request", "/Panopto/api/v1/folders%2F..%2Fx"},
		{"encoded dots, lower case", "/Panopto/api/%2e%2e/Upload/x?ticket=" + ticket, http.StatusBadRequest,
			"request", "/Panopto/api/%2e%2e/Upload/x"},
		{"double encoding", "/Panopto/api/%252e%252e/x", http.StatusBadRequest,
			"request", "/Panopto/api/%252e%252e/x"},
		{"no route", "/Elsewhere/a%20b%2Fc?ticket=" + ticket, http.StatusBadRequest,
			"request", "/Elsewhere/a%20b%2Fc"},
		{"no route, clean", "/Elsewhere/a%20b?ticket=" + ticket, http.StatusNotFound,
			"request", "/Elsewhere/a%20b"},
		{"not connected", "/Panopto/api/v1/folders/a%20b?ticket=" + ticket, http.StatusServiceUnavailable,
			"request", "/Panopto/api/v1/folders/a%20b"},
		{"absolute form", "http://user:pw-9d1c@evil.example/Panopto/api/x%2Fy?ticket=" + ticket, http.StatusBadRequest,
			"request refused", "/Panopto/api/x%2Fy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRoundTrip(t, e.addr(), "GET "+tc.target+" HTTP/1.1\r\n"+host+"Connection: close\r\n\r\n")
			if resp.StatusCode != tc.code {
				t.Fatalf("answered %d: %s", resp.StatusCode, body)
			}
			line := e.lastLogLine(tc.msg)
			if line["path"] != tc.path || line["method"] != "GET" || line["status"] != float64(tc.code) {
				t.Errorf("logged %v, want path %q", line, tc.path)
			}
			if logs := e.logs.String(); strings.Contains(logs, ticket) || strings.Contains(logs, "pw-9d1c") {
				t.Errorf("the log holds the query or user information:\n%s", logs)
			}
		})
	}
	if n := up.n.Load(); n != 0 {
		t.Errorf("the upstream received %d requests", n)
	}
}

// A path longer than the bound is cut, at a character boundary, and marked.
func TestLoggedPath(t *testing.T) {
	long := "/Panopto/api/" + strings.Repeat("é", 400)
	for _, tc := range []struct {
		name, target, want string
	}{
		{"escaped", "/Panopto/api/v1/folders%2F..%2Fx?a=b", "/Panopto/api/v1/folders%2F..%2Fx"},
		{"query only", "/?ticket=x", "/"},
		{"odd case kept", "/panopto/PUBLICAPI/Rest/x%2f", "/panopto/PUBLICAPI/Rest/x%2f"},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		if got := loggedPath(r); got != tc.want {
			t.Errorf("%s: loggedPath(%q) = %q, want %q", tc.name, tc.target, got, tc.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.RequestURI = long + "?q=1"
	got := loggedPath(r)
	if !strings.HasSuffix(got, "…") || len(got) > maxLoggedPath+len("…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("a long path logged as %q (%d bytes)", got, len(got))
	}
	if !json.Valid([]byte(`"` + strings.TrimSuffix(got, "…") + `"`)) {
		t.Errorf("cut inside a character: %q", got)
	}
	r.RequestURI = "/a\tb\x7fc"
	if got := loggedPath(r); got != "/a?b?c" {
		t.Errorf("control characters logged as %q", got)
	}
}

// Requests refused before routing (wrong shared secret, CONNECT) are logged
// too, with the raw path.
func TestRefusedBeforeRoutingIsLogged(t *testing.T) {
	e := newEnv(t, envConfig{upstream: &recordingUpstream{}, secret: "inbound-secret-51c2"})
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/Panopto/api/v1/folders%2Fx?ticket=t-1", nil)
	req.Header.Set(secretHeader, "wrong")
	resp := e.do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("answered %d", resp.StatusCode)
	}
	line := e.lastLogLine("request refused")
	if line["path"] != "/Panopto/api/v1/folders%2Fx" || line["status"] != float64(http.StatusUnauthorized) {
		t.Errorf("logged %v", line)
	}
	if logs := e.logs.String(); strings.Contains(logs, "inbound-secret-51c2") || strings.Contains(logs, "t-1") {
		t.Errorf("the log holds the secret or the query:\n%s", logs)
	}
}

// An upstream failure is logged with the path as the client sent it.
func TestUpstreamFailureLogsTheRawPath(t *testing.T) {
	up := &recordingUpstream{raw: func(w http.ResponseWriter, _ *http.Request) {
		// Drop the connection without an answer.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}}
	e := newEnv(t, envConfig{upstream: up})
	code, _, body := e.call(http.MethodGet, "/Panopto/Upload/0b1c/50%25%20done.mp4?X-Amz-Signature=sig-77", nil)
	if code != http.StatusBadGateway {
		t.Fatalf("answered %d: %s", code, body)
	}
	for _, msg := range []string{"upstream request failed", "request"} {
		if line := e.lastLogLine(msg); line["path"] != "/Panopto/Upload/0b1c/50%25%20done.mp4" {
			t.Errorf("%q logged path %v", msg, line["path"])
		}
	}
	if strings.Contains(e.logs.String(), "sig-77") {
		t.Errorf("the log holds the query:\n%s", e.logs.String())
	}
}
