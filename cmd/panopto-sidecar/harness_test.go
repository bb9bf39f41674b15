package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

const (
	testClientID     = "ontrack-sidecar"
	testClientSecret = "client-secret-4f9a2c71e0"
)

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago, so public_url can name it before the sidecar starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// stand-in Panopto for whole-program tests.
type panopto struct {
	*panoptofake.Server
	URL string
}

func startPanopto(t testing.TB, o panoptofake.Options) *panopto {
	t.Helper()
	if o.ClientID == "" {
		o.ClientID, o.ClientSecret = testClientID, testClientSecret
	}
	f := panoptofake.New(o)
	registerFake(f)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &panopto{Server: f, URL: srv.URL}
}

// sidecarProc is one sidecar started with run(), as an operator would.
type sidecarProc struct {
	t      testing.TB
	URL    string
	Config string
	Logs   *testsupport.SyncBuffer
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error
}

// testEnv is the environment of an in-process sidecar: env, with the test
// client's id and secret unless env sets them.
func testEnv(env map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := env[k]; ok {
			return v
		}
		switch k {
		case "PANOPTO_CLIENT_ID":
			return testClientID
		case "PANOPTO_CLIENT_SECRET":
			return testClientSecret
		}
		return ""
	}
}

// startSidecar writes cfg (with {{LISTEN}} and {{URL}} filled in) to a temp
// config.yaml and runs `panopto-sidecar serve -config FILE` in-process.
func startSidecar(t testing.TB, dir, addr, cfg string, env map[string]string) *sidecarProc {
	t.Helper()
	return startSidecarWith(t, dir, addr, cfg, env, nil)
}

// startSidecarWith is startSidecar with serve's test options (opts nil:
// through the command line, as startSidecar).
func startSidecarWith(t testing.TB, dir, addr, cfg string, env map[string]string, opts *serveOptions) *sidecarProc {
	t.Helper()
	url := "http://" + addr
	cfg = strings.ReplaceAll(cfg, "{{LISTEN}}", addr)
	cfg = strings.ReplaceAll(cfg, "{{URL}}", url)
	path := filepath.Join(dir, "config.yaml")
	if _, err := os.Stat(path); os.IsNotExist(err) {
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	getenv := testEnv(env)
	ctx, cancel := context.WithCancel(context.Background())
	p := &sidecarProc{t: t, URL: url, Config: path, Logs: &testsupport.SyncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		if opts == nil {
			p.err = run(ctx, []string{"serve", "-config", path}, getenv, io.Discard, p.Logs)
		} else {
			p.err = serve(ctx, path, getenv, p.Logs, *opts)
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		registerOutput(t.Name()+" sidecar log", p.Logs.String())
		if t.Failed() {
			t.Logf("sidecar log (without successful requests):\n%s", lastLines(withoutOK(p.Logs.String()), 80))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("sidecar exited: %v\n%s", p.err, p.Logs.String())
		default:
		}
		if resp, err := shortClient.Get(url + "/-/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sidecar not healthy:\n%s", p.Logs.String())
	return nil
}

// Stop cancels the sidecar (as SIGTERM does) and waits for run to return.
func (p *sidecarProc) Stop() error {
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(40 * time.Second):
		p.t.Error("sidecar did not stop")
		return nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// login follows /-/login through Panopto's authorize endpoint back to
// /redirect, as a browser (or curl -L with a cookie jar) does.
func logIn(t testing.TB, base string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := c.Get(base + "/-/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Connected to Panopto") {
		t.Fatalf("login ended with %d: %s", resp.StatusCode, body)
	}
}

func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// secretsIn returns every token held in a file store's files under dir.
func secretsIn(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		for _, k := range []string{"access_token", "refresh_token"} {
			if s, _ := m[k].(string); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

var tokenish = regexp.MustCompile(`(?i)bearer [a-z0-9._~+/-]{8,}`)

// assertNoSecrets fails if any secret appears in any of the texts, or if a
// text holds something that looks like a bearer header value.
func assertNoSecrets(t testing.TB, secrets []string, texts map[string]string) {
	t.Helper()
	for name, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s contains a secret (%d chars)", name, len(s))
			}
		}
		if m := tokenish.FindString(text); m != "" {
			t.Errorf("%s contains a bearer value", name)
		}
	}
}

func fetch(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	registerOutput(t.Name()+" responses", string(b)+"\n")
	return string(b)
}

func baseConfig(upstream, storeDir string) string {
	return fmt.Sprintf(`listen: {{LISTEN}}
public_url: {{URL}}
upstream: %s
oauth:
  refresh_before: 2s
token_store: {type: file, path: %s}
log: {level: debug, format: json}
shutdown_grace: 10s
`, upstream, filepath.Join(storeDir, "panopto-token.json"))
}

// withoutOK drops the log lines of requests answered 200.
func withoutOK(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"status":200`) {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// LogsAtStop stops the sidecar and returns its whole log: log lines are
// written out in batches, and only stopping flushes the last of them.
func (p *sidecarProc) LogsAtStop() string {
	p.Stop()
	return p.Logs.String()
}

// WaitLog waits until the sidecar's log holds every one of the texts.
func (p *sidecarProc) WaitLog(t testing.TB, texts ...string) {
	t.Helper()
	testsupport.WaitFor(t, 5*time.Second, fmt.Sprintf("log lines with %q", texts), func() bool {
		logs := p.Logs.String()
		for _, s := range texts {
			if !strings.Contains(logs, s) {
				return false
			}
		}
		return true
	})
}

// realSidecar is the built binary serving a minimal config against a
// stand-in, as an operator runs it, logged in already.
type realSidecar struct {
	base    string    // http://addr
	dir     string    // holds config.yaml, panopto-token.json and sidecar.log
	logPath string    // its stderr
	cmd     *exec.Cmd // killed when the test ends, if still running
}

// startRealSidecar runs bin on addr in front of pan (whose redirect URIs
// must name addr), with extra appended to the config, waits until it is
// healthy and logs in like a browser.
func startRealSidecar(t *testing.T, bin, addr string, pan *panopto, extra string) *realSidecar {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, fmt.Sprintf("listen: %s\npublic_url: http://%s\nupstream: %s\ntoken_store: {type: file, path: %s}\nlog: {format: json}\n%s",
		addr, addr, pan.URL, filepath.Join(dir, "panopto-token.json"), extra))
	rs := &realSidecar{base: "http://" + addr, dir: dir, logPath: filepath.Join(dir, "sidecar.log")}
	lf, err := os.Create(rs.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	rs.cmd = exec.Command(bin, "serve", "-config", cfg)
	rs.cmd.Env = append(os.Environ(), "PANOPTO_CLIENT_ID="+testClientID, "PANOPTO_CLIENT_SECRET="+testClientSecret)
	rs.cmd.Stderr = lf
	if err := rs.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.cmd.Process.Kill() })
	testsupport.WaitFor(t, 10*time.Second, "healthy", func() bool { return statusCode(rs.base+"/-/healthz") == 200 })
	logIn(t, rs.base)
	return rs
}
