package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

const (
	testClientID     = "ontrack-compose-test"
	testClientSecret = "compose-test-client-secret-6c1f"
	sharedSecretHdr  = "X-Sidecar-Auth"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sidecarBinary builds ./cmd/panopto-sidecar once for the package's tests.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "panopto-sidecar-deploy-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "panopto-sidecar")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/panopto-sidecar").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// nginxBinary finds nginx ($NGINX_BIN, PATH, /usr/sbin), or skips (fails
// with PANOPTO_SIDECAR_REQUIRE_PEERS=1).
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("NGINX_BIN"), "nginx", "/usr/sbin/nginx"} {
		if p == "" {
			continue
		}
		if found, err := exec.LookPath(p); err == nil {
			return found
		}
	}
	if os.Getenv("PANOPTO_SIDECAR_REQUIRE_PEERS") == "1" {
		t.Fatal("no nginx: apt-get install nginx-light, or set NGINX_BIN")
	}
	t.Skip("no nginx: apt-get install nginx-light, or set NGINX_BIN")
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNginx runs nginx on addr with a server block that includes the
// shipped nginx-panopto.conf, its upstream panopto-sidecar:9128 replaced by
// sidecarPublic: the one change from the shipped file. OnTrack's own
// locations are a stand-in answering 418. It returns the access log's path.
func startNginx(t *testing.T, addr, sidecarPublic string) string {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	shipped, err := os.ReadFile(filepath.Join(composeDir, "nginx-panopto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	const upstream = "http://" + sidecarName + ":" + publicPort + "/"
	if bytes.Count(shipped, []byte(upstream)) != 1 {
		t.Fatalf("nginx-panopto.conf does not proxy_pass to %s exactly once", upstream)
	}
	conf := bytes.Replace(shipped, []byte(upstream), []byte("http://"+sidecarPublic+"/"), 1)
	if err := os.WriteFile(filepath.Join(dir, "panopto-sidecar.conf"), conf, 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pid %s;\nerror_log stderr info;\nevents { worker_connections 64; }\nhttp {\n", filepath.Join(dir, "nginx.pid"))
	fmt.Fprintf(&b, "  access_log %s;\n", filepath.Join(dir, "access.log"))
	for _, k := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "  %s_temp_path %s;\n", k, filepath.Join(dir, k))
	}
	fmt.Fprintf(&b, "  server {\n    listen %s;\n    server_name ontrack.test;\n", addr)
	fmt.Fprintf(&b, "    include %s;\n", filepath.Join(dir, "panopto-sidecar.conf"))
	b.WriteString("    location / { return 418 \"OnTrack's web server\\n\"; }\n  }\n}\n")
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// One process, no workers: nothing outlives the test, and as root
	// nginx does not switch to a user that cannot read the temp dir.
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-g", "daemon off; master_process off;")
	logs := &testsupport.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nginx:\n%s", logs.String())
		}
	})
	testsupport.WaitFor(t, 10*time.Second, "nginx on "+addr, func() bool {
		select {
		case <-done:
			t.Fatalf("nginx exited:\n%s", logs.String())
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return filepath.Join(dir, "access.log")
}

// yamlSet sets key (dotted path) in the mapping of doc to v, creating
// mappings on the way; v nil deletes the key.
func yamlSet(t *testing.T, doc *yaml.Node, key string, v any) {
	t.Helper()
	m := doc
	if m.Kind == yaml.DocumentNode {
		m = m.Content[0]
	}
	parts := strings.Split(key, ".")
	for i, k := range parts {
		idx := -1
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value == k {
				idx = j
			}
		}
		if i == len(parts)-1 {
			if v == nil {
				if idx >= 0 {
					m.Content = append(m.Content[:idx], m.Content[idx+2:]...)
				}
				return
			}
			var val yaml.Node
			if err := val.Encode(v); err != nil {
				t.Fatal(err)
			}
			if idx >= 0 {
				m.Content[idx+1] = &val
			} else {
				m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &val)
			}
			return
		}
		if idx < 0 {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &yaml.Node{Kind: yaml.MappingNode})
			idx = len(m.Content) - 2
		}
		m = m.Content[idx+1]
	}
}

// sidecarProc is the real binary serving a config.
type sidecarProc struct {
	listen, public string
	secret         string
	logs           *testsupport.SyncBuffer
}

// exampleForTest is config.example.yaml with only what a test on
// loopback must change: the addresses, the upstream, the secret file, the
// token file and return_to. Everything else is as shipped.
func exampleForTest(t *testing.T, set map[string]any) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(composeDir, "config.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		yamlSet(t, &doc, k, v)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkConfig runs `panopto-sidecar check -offline` on cfg and returns its
// output and whether it passed.
func checkConfig(t *testing.T, bin, path string) (string, bool) {
	t.Helper()
	cmd := exec.Command(bin, "check", "-offline", "-config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PANOPTO_CLIENT_ID=" + testClientID, "PANOPTO_CLIENT_SECRET=" + testClientSecret}
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// startSidecar runs `panopto-sidecar serve` on cfg and waits for healthz.
func startSidecar(t *testing.T, bin, cfgPath string, p *sidecarProc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfgPath)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PANOPTO_CLIENT_ID=" + testClientID, "PANOPTO_CLIENT_SECRET=" + testClientSecret}
	p.logs = &testsupport.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("sidecar:\n%s", p.logs.String())
		}
	})
	testsupport.WaitFor(t, 20*time.Second, "the sidecar's healthz", func() bool {
		select {
		case <-done:
			t.Fatalf("the sidecar exited:\n%s", p.logs.String())
		default:
		}
		resp, err := http.Get("http://" + p.listen + "/-/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

// private calls the sidecar's main listener as OnTrack's apiserver does:
// with the shared secret, and Host as given ("" = the address dialled).
func (p *sidecarProc) private(t *testing.T, method, path, host string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+p.listen+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set(sharedSecretHdr, p.secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// composeEnv is the compose deployment on loopback: the Panopto stand-in,
// OnTrack (a page that records where the browser landed), the real sidecar
// with config.example.yaml, and a real nginx with nginx-panopto.conf.
type composeEnv struct {
	fake      *panoptofake.Server
	upstream  string // the stand-in's URL
	ontrack   *httptest.Server
	landed    chan *url.URL
	nginx     string // base URL
	publicURL string
	accessLog string
	sc        *sidecarProc
}

func newComposeEnv(t *testing.T) *composeEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and starts nginx")
	}
	nginxBinary(t) // skip early when it is missing
	bin := sidecarBinary(t)
	e := &composeEnv{landed: make(chan *url.URL, 4)}
	dir := t.TempDir()

	nginxAddr := freeAddr(t)
	e.nginx = "http://" + nginxAddr
	e.publicURL = e.nginx + "/panopto"
	e.sc = &sidecarProc{listen: freeAddr(t), public: freeAddr(t), secret: "compose-shared-secret-91d2e7"}

	// Registered in Panopto: public_url + /redirect.
	e.fake = panoptofake.New(panoptofake.Options{
		ClientID: testClientID, ClientSecret: testClientSecret,
		RedirectURIs: []string{e.publicURL + "/redirect"},
	})
	up := httptest.NewServer(e.fake)
	t.Cleanup(up.Close)
	e.upstream = up.URL
	e.ontrack = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case e.landed <- r.URL:
		default:
		}
		io.WriteString(w, "OnTrack\n")
	}))
	t.Cleanup(e.ontrack.Close)

	secretFile := filepath.Join(dir, "panopto_sidecar_secret")
	if err := os.WriteFile(secretFile, []byte(e.sc.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	set := map[string]any{
		"listen":                     e.sc.listen,
		"public_listen":              e.sc.public,
		"public_url":                 e.publicURL,
		"upstream":                   up.URL,
		"inbound.shared_secret_file": secretFile,
		"accounts.return_to":         []string{e.ontrack.URL + "/"},
		"token_store.path":           filepath.Join(dir, "panopto-token.json"),
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, exampleForTest(t, set), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, ok := checkConfig(t, bin, cfgPath); !ok {
		t.Fatalf("panopto-sidecar check rejects config.example.yaml (addresses changed for the test):\n%s", out)
	}
	startSidecar(t, bin, cfgPath, e.sc)
	e.accessLog = startNginx(t, nginxAddr, e.sc.public)
	return e
}

// TestComposeBehindNginx: a student's connection through a real nginx
// running the shipped nginx-panopto.conf in front of the sidecar, whose
// public_url has the /panopto path: OnTrack mints the link on the private
// listener, the browser goes through nginx to Panopto's authorize and back
// to nginx's /panopto/redirect, and lands on OnTrack's return_to,
// connected. Nothing of the private listener is reachable through nginx.
func TestComposeBehindNginx(t *testing.T) {
	e := newComposeEnv(t)

	// OnTrack asks for alice's link (POST /-/connect on listen).
	returnTo := e.ontrack.URL + "/projects/42?tab=panopto"
	code, out := e.sc.private(t, http.MethodPost, "/-/connect", "", map[string]string{"account": "alice", "return_to": returnTo})
	link, _ := out["login_url"].(string)
	if code != http.StatusCreated || !strings.HasPrefix(link, e.publicURL+"/-/login?ticket=") {
		t.Fatalf("POST /-/connect: %d %v, want a login_url under %s", code, out, e.publicURL)
	}

	// The student's browser: cookies kept, every redirect followed.
	jar, _ := cookiejar.New(nil)
	var visited []string
	browser := &http.Client{Jar: jar, Timeout: 20 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		visited = append(visited, req.URL.Scheme+"://"+req.URL.Host+req.URL.Path)
		if len(via) > 10 {
			return fmt.Errorf("too many redirects: %v", visited)
		}
		return nil
	}}
	resp, err := browser.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Host != strings.TrimPrefix(e.ontrack.URL, "http://") {
		t.Fatalf("the browser ended at %s with %d: %s (via %v)", resp.Request.URL, resp.StatusCode, page, visited)
	}
	var landed *url.URL
	select {
	case landed = <-e.landed:
	default:
		t.Fatal("OnTrack saw no request")
	}
	q := landed.Query()
	if landed.Path != "/projects/42" || q.Get("tab") != "panopto" || q.Get("panopto") != "connected" || q.Get("account") != "alice" {
		t.Fatalf("landed on OnTrack at %s, want /projects/42 with tab=panopto&panopto=connected&account=alice", landed)
	}
	wantVisited := []string{e.upstream + "/Panopto/oauth2/connect/authorize", e.publicURL + "/redirect", e.ontrack.URL + "/projects/42"}
	if strings.Join(visited, " ") != strings.Join(wantVisited, " ") {
		t.Errorf("the browser went %v, want %v", visited, wantVisited)
	}
	// nginx writes a request's access log line once it has finished the
	// request, which may be after the browser read the answer.
	for _, p := range []string{`"GET /panopto/-/login?ticket=`, `"GET /panopto/redirect?`} {
		testsupport.WaitFor(t, 10*time.Second, "nginx's access log line "+p+"…", func() bool {
			access, _ := os.ReadFile(e.accessLog)
			return strings.Contains(string(access), p)
		})
	}

	// The sidecar holds alice's grant, verified as her Panopto user.
	if code, st := e.sc.private(t, http.MethodGet, "/-/accounts/alice", "", nil); code != 200 || st["connected"] != true || st["panopto_user"] != "alice" {
		t.Fatalf("GET /-/accounts/alice: %d %v", code, st)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.sc.listen+"/Panopto/api/v1/whoami", nil)
	req.Header.Set(sharedSecretHdr, e.sc.secret)
	req.Header.Set("X-Panopto-User", "alice")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"User":"alice"`) {
			t.Fatalf("alice's API call: %d %s", resp.StatusCode, b)
		}
	}

	// Through nginx: the public listener's healthz, and nothing of listen,
	// with or without the shared secret.
	apiCalls := e.fake.Stats().APICalls
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/panopto/-/healthz", 200},
		{"GET", "/panopto/-/status", 404},
		{"GET", "/panopto/metrics", 404},
		{"POST", "/panopto/-/connect", 404},
		{"GET", "/panopto/-/accounts/alice", 404},
		{"DELETE", "/panopto/-/accounts/alice", 404},
		{"GET", "/panopto/Panopto/api/v1/folders", 404},
		{"POST", "/panopto/Panopto/PublicAPI/REST/sessionUpload", 404},
		{"POST", "/panopto/-/uploads?folder_id=x&name=a.mp4", 404},
		{"GET", "/panopto/", 404},
		{"GET", "/panopto/-/login", 403}, // the operator's login is not served on public_listen
		{"GET", "/-/status", 418},        // OnTrack's own locations
		{"GET", "/Panopto/api/v1/folders", 418},
	} {
		for _, withSecret := range []bool{false, true} {
			req, _ := http.NewRequest(c.method, e.nginx+c.path, strings.NewReader(`{"account":"mallory","return_to":"`+returnTo+`"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Panopto-User", "alice")
			if withSecret {
				req.Header.Set(sharedSecretHdr, e.sc.secret)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s %s through nginx (secret %v): %d, want %d", c.method, c.path, withSecret, resp.StatusCode, c.want)
			}
		}
	}
	if n := e.fake.Stats().APICalls; n != apiCalls {
		t.Errorf("requests through nginx reached Panopto's API %d times", n-apiCalls)
	}
	if access, _ := os.ReadFile(e.accessLog); strings.Contains(e.sc.logs.String(), e.sc.secret) || strings.Contains(string(access), e.sc.secret) {
		t.Error("the shared secret appears in the sidecar's or nginx's log")
	}
}

// TestComposeAPIServerHost: OnTrack's apiserver calls
// http://panopto-sidecar:9127, so its requests carry that Host; with
// config.example.yaml's inbound.allowed_hosts they are served, and another
// Host is refused (421).
func TestComposeAPIServerHost(t *testing.T) {
	e := newComposeEnv(t)
	host := sidecarName + ":" + listenPort
	if code, st := e.sc.private(t, http.MethodGet, "/-/accounts/alice", host, nil); code != 200 || st["account"] != "alice" {
		t.Errorf("GET /-/accounts/alice with Host %s: %d %v, want 200", host, code, st)
	}
	code, out := e.sc.private(t, http.MethodPost, "/-/connect", host, map[string]string{"account": "alice", "return_to": e.ontrack.URL + "/"})
	if link, _ := out["login_url"].(string); code != http.StatusCreated || !strings.HasPrefix(link, e.publicURL+"/-/login?ticket=") {
		t.Errorf("POST /-/connect with Host %s: %d %v, want 201 and a link under %s", host, code, out, e.publicURL)
	}
	if code, _ := e.sc.private(t, http.MethodGet, "/-/accounts/alice", "evil.example:9127", nil); code != http.StatusMisdirectedRequest {
		t.Errorf("GET /-/accounts/alice with Host evil.example:9127: %d, want 421", code)
	}
}
