//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one proxy under test, run as its own process (group).
type proc struct {
	name string
	url  string // base URL clients use
	cmd  *exec.Cmd
	log  *os.File
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startProc(name, dir string, env []string, bin string, args ...string) (*proc, error) {
	lf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: lf}, nil
}

// startServing starts a process that serves HTTP at listen and waits up to
// wait for readyPath to answer; a process that does not is stopped.
func startServing(ctx context.Context, listen, readyPath string, wait time.Duration, name, dir string, env []string, bin string, args ...string) (*proc, error) {
	p, err := startProc(name, dir, env, bin, args...)
	if err != nil {
		return nil, err
	}
	p.url = "http://" + listen
	if err := waitHTTP(ctx, p, p.url+readyPath, wait); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// stop ends the process group this harness started (by its id), first
// politely, then for good after a bounded wait.
func (p *proc) stop() {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	p.log.Close()
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// waitHTTP polls url until it answers (any status) or the deadline passes.
func waitHTTP(ctx context.Context, p *proc, url string, d time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p != nil && p.cmd.ProcessState != nil {
			break
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	msg := ""
	if p != nil {
		msg = "\n--- " + p.name + " log ---\n" + p.tail()
	}
	return fmt.Errorf("%s did not answer within %s%s", url, d, msg)
}

// ---- process-tree accounting (/proc) ----

var clkTck = 100.0 // USER_HZ; 100 on every Linux we run on

// treePIDs returns pid and all its descendants.
func treePIDs(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := ppid(pid); ok {
			children[pp] = append(children[pp], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/pid/stat after the command name.
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(s[i+1:]), true
}

func ppid(pid int) (int, bool) {
	f, ok := statFields(pid)
	if !ok || len(f) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil
}

// cpuSeconds is utime+stime of pid and its live descendants.
func cpuSeconds(root int) float64 {
	var ticks float64
	for _, pid := range treePIDs(root) {
		f, ok := statFields(pid)
		if !ok || len(f) < 13 {
			continue
		}
		// after ")": state(0) ppid(1) … utime(11) stime(12)
		u, _ := strconv.ParseFloat(f[11], 64)
		s, _ := strconv.ParseFloat(f[12], 64)
		ticks += u + s
	}
	return ticks / clkTck
}

func statusKB(pid int, key string) int64 {
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// peakRSS is the sum of VmHWM over the process tree, in bytes.
func peakRSS(root int) int64 {
	var kb int64
	for _, pid := range treePIDs(root) {
		kb += statusKB(pid, "VmHWM")
	}
	return kb << 10
}

// resetPeakRSS resets VmHWM of the tree (clear_refs 5, Linux >= 4.0).
func resetPeakRSS(root int) error {
	var errs []error
	for _, pid := range treePIDs(root) {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ---- tools ----

func lookTool(explicit, name string, extra ...string) string {
	if explicit != "" {
		return explicit
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range extra {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

func caddyCandidates() []string {
	var c []string
	if gb := os.Getenv("GOBIN"); gb != "" {
		c = append(c, filepath.Join(gb, "caddy"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		c = append(c, filepath.Join(h, ".cache", "panopto-sidecar-bench", "bin", "caddy"), filepath.Join(h, "go", "bin", "caddy"))
	}
	return c
}

const caddyModule = "github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9"

// ensureTools finds nginx, wrk and caddy, installing the missing ones when
// allowed: nginx-light and wrk from the distribution, caddy with go install
// into $HOME/.cache/panopto-sidecar-bench/bin.
func ensureTools(ctx context.Context, f *flags, stderr io.Writer) error {
	need := map[string]bool{"wrk": !f.skip["latency"]} // wrk loads only the small-GET phase
	for _, t := range f.targets {
		need[t] = true
	}
	f.wrkBin = lookTool(f.wrkBin, "wrk")
	f.nginxBin = lookTool(f.nginxBin, "nginx", "/usr/sbin/nginx")
	f.caddyBin = lookTool(f.caddyBin, "caddy", caddyCandidates()...)
	var apt []string
	if need["wrk"] && f.wrkBin == "" {
		apt = append(apt, "wrk")
	}
	if need["nginx"] && f.nginxBin == "" {
		apt = append(apt, "nginx-light")
	}
	if len(apt) > 0 && f.install {
		fmt.Fprintf(stderr, "installing %s with apt-get\n", strings.Join(apt, " "))
		ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq"}, apt...)} {
			cmd := exec.CommandContext(ictx, "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			cmd.Stdout, cmd.Stderr = stderr, stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("apt-get %s: %w", args[0], err)
			}
		}
		f.wrkBin = lookTool("", "wrk")
		f.nginxBin = lookTool("", "nginx", "/usr/sbin/nginx")
	}
	if need["caddy"] && f.caddyBin == "" && f.install {
		h, _ := os.UserHomeDir()
		bin := filepath.Join(h, ".cache", "panopto-sidecar-bench", "bin")
		if gb := os.Getenv("GOBIN"); gb != "" {
			bin = gb
		}
		fmt.Fprintf(stderr, "installing caddy (%s) into %s\n", caddyModule, bin)
		ictx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ictx, "go", "install", caddyModule)
		cmd.Dir = os.TempDir() // outside the module: its go.mod stays untouched
		cmd.Env = append(os.Environ(), "GOBIN="+bin)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go install caddy: %w", err)
		}
		f.caddyBin = filepath.Join(bin, "caddy")
	}
	var missing []string
	if need["wrk"] && f.wrkBin == "" {
		missing = append(missing, "wrk")
	}
	if need["nginx"] && f.nginxBin == "" {
		missing = append(missing, "nginx")
	}
	if need["caddy"] && f.caddyBin == "" {
		missing = append(missing, "caddy")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s (install them or pass -install)", strings.Join(missing, ", "))
	}
	return nil
}

func buildSidecar(ctx context.Context, f *flags, dir string, stderr io.Writer) error {
	if f.sidecarBin != "" {
		return nil
	}
	out := filepath.Join(dir, "panopto-sidecar")
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(bctx, "go", "build", "-o", out, "./cmd/panopto-sidecar")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build panopto-sidecar (run the harness from the module root): %w", err)
	}
	f.sidecarBin = out
	return nil
}

// ---- the three proxies ----

type sidecarSetup struct {
	dir           string
	upstream      string // http://host:port
	tokens        *tokenServer
	listen        string
	refreshBefore time.Duration
	logLevel      string
}

func sidecarConfig(s sidecarSetup) string {
	tb := s.tokens.base() + "/Panopto/oauth2/connect/"
	return fmt.Sprintf(`# generated by bench: a sidecar in front of the fast upstream
listen: %[1]s
public_url: http://%[1]s
upstream: %[2]s
oauth:
  authorize_url: %[3]sauthorize
  token_url: %[3]stoken
  revocation_url: %[3]srevocation
  issuer: %[7]s
  refresh_before: %[4]s
token_store: {type: file, path: %[5]s}
routes:
  - {prefix: /Panopto/api/, inject: true}
log: {level: %[6]s, format: json}
shutdown_grace: 2s
`, s.listen, s.upstream, tb, s.refreshBefore, filepath.Join(s.dir, "panopto-token.json"), s.logLevel,
		s.tokens.base()+"/Panopto/oauth2") // the token server issues the id_tokens, not the fast upstream
}

// startSidecar writes a config, starts the built binary and logs it in
// through the token server's authorize page, as a browser would.
func startSidecar(ctx context.Context, bin string, s sidecarSetup) (*proc, error) {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	cfg := filepath.Join(s.dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(sidecarConfig(s)), 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "PANOPTO_CLIENT_ID="+s.tokens.clientID, "PANOPTO_CLIENT_SECRET="+s.tokens.clientSecret)
	p, err := startServing(ctx, s.listen, "/-/healthz", 20*time.Second, "sidecar", s.dir, env, bin, "serve", "-config", cfg)
	if err != nil {
		return nil, err
	}
	if err := login(ctx, p.url); err != nil {
		p.stop()
		return nil, fmt.Errorf("sidecar login: %w\n%s", err, p.tail())
	}
	return p, nil
}

func login(ctx context.Context, base string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 15 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/-/login", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login ended with %d: %.200s", resp.StatusCode, body)
	}
	r2, err := c.Get(base + "/-/ready")
	if err != nil {
		return err
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready after login (%d)", r2.StatusCode)
	}
	return nil
}

func startNginx(ctx context.Context, bin, dir, upstreamAddr, token string) (*proc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	nd := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(nd, "tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# generated by bench
daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  upstream api { server %[2]s; keepalive 256; keepalive_requests 1000000; }
  server {
    listen %[3]s;
    keepalive_requests 1000000;
    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Authorization "Bearer %[4]s";
    location / { proxy_pass http://api; }
    # large bodies stream both ways, as the sidecar does
    location /Panopto/api/v1/sink { proxy_pass http://api; proxy_request_buffering off; }
    location /Panopto/api/v1/source { proxy_pass http://api; proxy_buffering off; }
  }
}
`, nd, upstreamAddr, listen, token)
	path := filepath.Join(nd, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return startServing(ctx, listen, "/", 10*time.Second, "nginx", nd, os.Environ(), bin, "-p", nd, "-c", path)
}

func startCaddy(ctx context.Context, bin, dir, upstreamAddr, token string) (*proc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cd := filepath.Join(dir, "caddy")
	if err := os.MkdirAll(cd, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`# generated by bench
{
	admin off
	auto_https off
	persist_config off
	servers {
		protocols h1
	}
}
http://%[1]s {
	reverse_proxy %[2]s {
		header_up Authorization "Bearer %[3]s"
		transport http {
			keepalive 90s
			keepalive_idle_conns 512
			keepalive_idle_conns_per_host 256
		}
	}
}
`, listen, upstreamAddr, token)
	path := filepath.Join(cd, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	env := append(os.Environ(), "HOME="+cd, "XDG_DATA_HOME="+cd, "XDG_CONFIG_HOME="+cd)
	return startServing(ctx, listen, "/", 15*time.Second, "caddy", cd, env, bin, "run", "--config", path, "--adapter", "caddyfile")
}
