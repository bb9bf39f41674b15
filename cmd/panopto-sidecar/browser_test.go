package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// TestBrowsersCannotDriveListen: a page in a browser on the machine cannot
// use the loopback listener. A rebinding Host is 421 and reaches nothing; a
// cross-site POST /-/logout is 403 and the grant stays; a text/plain
// upload is 415 and nothing reaches Panopto. Panopto's redirect back, a
// cross-site navigation, still connects; curl-style requests and a name in
// inbound.allowed_hosts pass, and a name added there by a reload passes.
func TestBrowsersCannotDriveListen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	fake := panoptofake.New(panoptofake.Options{ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{"http://" + addr + "/redirect"}, AccessTTL: time.Hour})
	registerFake(fake)
	rec := &pathRecorder{}
	up := httptest.NewServer(rec.wrap(fake))
	defer up.Close()
	cfg := baseConfig(up.URL, dir) + "inbound: {allowed_hosts: [panopto-sidecar]}\n"
	sc := startSidecar(t, dir, addr, cfg, nil)

	// Panopto's redirect back to /redirect is a cross-site navigation,
	// and so is the start, from a link on another site.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: crossSiteNavigation{}}
	resp, err := browser.Get(sc.URL + "/-/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Connected to Panopto") {
		t.Fatalf("a login through cross-site navigations ended with %d: %s", resp.StatusCode, page)
	}
	connected := func() bool {
		var st struct {
			Connected bool `json:"connected"`
		}
		getJSON(t, sc.URL+"/-/status", &st)
		return st.Connected
	}
	if !connected() {
		t.Fatal("not connected after the login")
	}

	raw := func(req string) (int, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	upstreamSaw := len(rec.all())
	noneForwarded := func(what string) {
		t.Helper()
		if n := len(rec.all()); n != upstreamSaw {
			t.Errorf("%s: Panopto received %q", what, rec.all()[upstreamSaw:])
			upstreamSaw = n
		}
	}

	// DNS rebinding: evil.example resolves to 127.0.0.1 for the page.
	for _, path := range []string{"/Panopto/api/v1/folders", "/-/status", "/-/status?account=alice", "/metrics"} {
		code, body := raw("GET " + path + " HTTP/1.1\r\nHost: evil.example:" + port + "\r\nX-Panopto-User: alice\r\nConnection: close\r\n\r\n")
		if code != 421 || !strings.Contains(body, `"misdirected_request"`) {
			t.Errorf("rebinding GET %s: %d %s", path, code, body)
		}
	}
	noneForwarded("rebinding")

	// Forgery from another site's page.
	code, body := raw("POST /-/logout HTTP/1.1\r\nHost: " + addr + "\r\nOrigin: https://evil.example\r\n" +
		"Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if code != 403 || !strings.Contains(body, `"cross_origin_refused"`) {
		t.Errorf("cross-site POST /-/logout: %d %s", code, body)
	}
	if !connected() {
		t.Fatal("a cross-site POST /-/logout removed the grant")
	}
	code, body = raw("POST /-/logout HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if code != 415 || !connected() {
		t.Errorf("text/plain POST /-/logout: %d %s", code, body)
	}
	video := strings.Repeat("v", 4096)
	code, body = raw("POST /-/uploads?folder_id=" + panoptofake.FolderOnTrack + "&name=a.mp4 HTTP/1.1\r\nHost: " + addr +
		"\r\nX-Panopto-User: alice\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n" + video)
	if code != 415 || !strings.Contains(body, `"unsupported_media_type"`) {
		t.Errorf("text/plain POST /-/uploads: %d %s", code, body)
	}
	noneForwarded("forgery")

	// curl, Ruby and Go: no Origin, no Sec-Fetch-*, the sidecar's name.
	for _, host := range []string{addr, "localhost:" + port, "panopto-sidecar:9127"} {
		code, body := raw("GET /Panopto/api/v1/folders HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")
		if code != 200 {
			t.Errorf("GET /Panopto/api/v1/folders with Host %s: %d %s", host, code, body)
		}
	}
	if n := len(rec.all()); n != upstreamSaw+3 {
		t.Errorf("Panopto received %d requests for 3 allowed ones", n-upstreamSaw)
	}

	// inbound.allowed_hosts applies on reload.
	code, _ = raw("GET /-/healthz HTTP/1.1\r\nHost: sidecar-alias\r\nConnection: close\r\n\r\n")
	if code != 421 {
		t.Fatalf("Host sidecar-alias before it is allowed: %d", code)
	}
	next := strings.NewReplacer("{{LISTEN}}", addr, "{{URL}}", sc.URL, "[panopto-sidecar]", "[panopto-sidecar, sidecar-alias]").Replace(cfg)
	writeFile(t, sc.Config+".new", next)
	if err := os.Rename(sc.Config+".new", sc.Config); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 30*time.Second, "sidecar-alias allowed after the reload", func() bool {
		code, _ := raw("GET /-/healthz HTTP/1.1\r\nHost: sidecar-alias\r\nConnection: close\r\n\r\n")
		return code == 200
	})

	req, _ := http.NewRequest(http.MethodPost, sc.URL+"/-/logout", nil)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || connected() {
		t.Fatalf("POST /-/logout with application/json: %d, connected %v", resp.StatusCode, connected())
	}
}

// crossSiteNavigation sends every request as a browser sends a top-level
// navigation that began on another site.
type crossSiteNavigation struct{}

func (crossSiteNavigation) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Sec-Fetch-Dest", "document")
	r.Header.Set("Sec-Fetch-User", "?1")
	return http.DefaultTransport.RoundTrip(r)
}

// TestAllowedHostsFromConfig: the names besides loopback ones that listen
// answers to come from listen (unless it is every address),
// tls.acme.domains and inbound.allowed_hosts.
func TestAllowedHostsFromConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.Config
		want []string
	}{
		{"loopback", config.Config{Listen: "127.0.0.1:9127"}, []string{"127.0.0.1"}},
		{"every address", config.Config{Listen: "0.0.0.0:9127"}, nil},
		{"every IPv6 address", config.Config{Listen: "[::]:9127"}, nil},
		{"no host", config.Config{Listen: ":9127"}, nil},
		{"a name", config.Config{Listen: "sidecar.internal:9127"}, []string{"sidecar.internal"}},
		{"IPv6", config.Config{Listen: "[fd00::1]:9127"}, []string{"fd00::1"}},
		{"allowed hosts", config.Config{Listen: "0.0.0.0:9127",
			Inbound: config.Inbound{AllowedHosts: []string{"panopto-sidecar", "alias:8080"}}}, []string{"panopto-sidecar", "alias:8080"}},
		{"ACME domains", config.Config{Listen: "0.0.0.0:443",
			TLS: config.TLS{Mode: config.TLSACME, ACME: config.ACME{Domains: []string{"sidecar.example.org"}}}}, []string{"sidecar.example.org"}},
		{"domains without ACME", config.Config{Listen: "0.0.0.0:443",
			TLS: config.TLS{Mode: config.TLSFiles, ACME: config.ACME{Domains: []string{"sidecar.example.org"}}}}, nil},
	} {
		if got := allowedHosts(&tc.cfg); !slices.Equal(got, tc.want) {
			t.Errorf("%s: allowedHosts = %q, want %q", tc.name, got, tc.want)
		}
	}
}
