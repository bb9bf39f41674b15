package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/tlsconf/pebbletest"
	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// startTLSSidecar runs `panopto-sidecar serve -config cfgPath` in-process
// and waits until healthz answers 200 over HTTPS through client at base.
func startTLSSidecar(t *testing.T, cfgPath string, client *http.Client, base string, within time.Duration) *sidecarProc {
	t.Helper()
	getenv := testEnv(nil)
	ctx, cancel := context.WithCancel(context.Background())
	p := &sidecarProc{t: t, URL: base, Config: cfgPath, Logs: &testsupport.SyncBuffer{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		p.err = run(ctx, []string{"serve", "-config", cfgPath}, getenv, io.Discard, p.Logs)
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("sidecar log (without successful requests):\n%s", lastLines(withoutOK(p.Logs.String()), 80))
		}
	})
	deadline := time.Now().Add(within)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("sidecar exited: %v\n%s", p.err, p.Logs.String())
		default:
		}
		resp, err := client.Get(base + "/-/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if resp.TLS == nil {
					t.Fatal("healthz answered without TLS")
				}
				return p
			}
			err = fmt.Errorf("healthz answered %d", resp.StatusCode)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("sidecar not healthy over HTTPS (last: %v):\n%s", lastErr, p.Logs.String())
	return nil
}

// httpsClient trusts roots and reaches host:port (a name no resolver knows)
// at 127.0.0.1:port; every other address is dialled as is. Redirects are
// followed and recorded, and the jar keeps cookies across hosts.
type httpsClient struct {
	*http.Client
	mu   sync.Mutex
	hops []*url.URL
}

func newHTTPSClient(t *testing.T, roots *x509.CertPool, host, loopback string) *httpsClient {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == host {
				addr = loopback
			}
			return d.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	jar, _ := cookiejar.New(nil)
	c := &httpsClient{}
	c.Client = &http.Client{
		Transport: tr, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			c.mu.Lock()
			c.hops = append(c.hops, req.URL)
			c.mu.Unlock()
			if len(via) > 10 {
				return fmt.Errorf("too many redirects")
			}
			return nil
		},
	}
	return c
}

// authorizeHop returns the redirect that went to the authorize endpoint.
func (c *httpsClient) authorizeHop() *url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.hops {
		if strings.HasSuffix(u.Path, "/oauth2/connect/authorize") {
			return u
		}
	}
	return nil
}

func servedSerial(t *testing.T, resp *http.Response) *big.Int {
	t.Helper()
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatal("response was not served over TLS")
	}
	return resp.TLS.PeerCertificates[0].SerialNumber
}

// TestServeHTTPSWithACME: the whole sidecar obtains a certificate for
// sidecar.test from a real ACME server (Pebble, validating the challenge
// against the sidecar's own challenge listeners), serves health, login and
// the proxy over HTTPS with an https redirect_uri, and after a restart with
// the CA gone serves the certificate it stored.
func TestServeHTTPSWithACME(t *testing.T) {
	peb := pebbletest.Start(t)
	dir := t.TempDir()
	addr := childAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	host := pebbletest.Domain + ":" + port
	public := "https://" + host
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{public + "/redirect"}})

	cfg := fmt.Sprintf(`listen: %s
public_url: %s
upstream: %s
token_store: {type: file, path: %s}
log: {level: debug, format: json}
shutdown_grace: 5s
tls:
  mode: acme
  acme:
    domains: [%s]
    email: ops@sidecar.test
    directory: %s
    ca_roots: [%s]
    storage: %s
    http_port: %d
    tls_alpn_port: %d
`, addr, public, pan.URL, filepath.Join(dir, "panopto-token.json"), pebbletest.Domain,
		peb.Directory, peb.MiniCA, filepath.Join(dir, "certmagic"), peb.HTTPPort, peb.TLSALPNPort)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	roots := peb.IssuedRoots(t)
	c := newHTTPSClient(t, roots, host, addr)
	sc := startTLSSidecar(t, cfgPath, c.Client, public, 30*time.Second)

	resp, err := c.Get(public + "/-/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	leaf := resp.TLS.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != pebbletest.Domain {
		t.Errorf("served certificate names %v", leaf.DNSNames)
	}
	if strings.Contains(leaf.Issuer.CommonName, "minica") {
		t.Errorf("served a certificate from Pebble's own CA, not an issued one: %s", leaf.Issuer)
	}
	obtained := leaf.SerialNumber

	// Plain HTTP on the TLS port is not served.
	if presp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + addr + "/-/healthz"); err == nil {
		presp.Body.Close()
		if presp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}

	// Before login the proxy refuses, naming the https login URL.
	var nc map[string]string
	resp, err = c.Get(public + "/Panopto/api/v1/folders")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&nc)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || nc["login_url"] != public+"/-/login" {
		t.Fatalf("before login: %d %v", resp.StatusCode, nc)
	}

	// Login as a browser does: the binding cookie is Secure and must come
	// back on the https callback.
	resp, err = c.Get(public + "/-/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Connected to Panopto") {
		t.Fatalf("login ended with %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	if resp.Request.URL.Scheme != "https" || resp.Request.URL.Host != host || resp.Request.URL.Path != "/redirect" {
		t.Errorf("login ended at %s, want %s/redirect", resp.Request.URL, public)
	}
	az := c.authorizeHop()
	if az == nil {
		t.Fatal("login never went to the authorize endpoint")
	}
	if got := az.Query().Get("redirect_uri"); got != public+"/redirect" {
		t.Errorf("redirect_uri sent to authorize = %q, want %q", got, public+"/redirect")
	}

	var folders struct{ Results []map[string]any }
	resp, err = c.Get(public + "/Panopto/api/v1/folders")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&folders)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || len(folders.Results) == 0 {
		t.Fatalf("folders over HTTPS: %d %v %v", resp.StatusCode, err, folders)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("proxied over %s, want HTTP/2 (ALPN h2)", resp.Proto)
	}
	if pan.Stats().APICalls == 0 {
		t.Error("the folders request did not reach Panopto")
	}

	// Restart on the same storage with the CA gone: the stored certificate
	// is served and the stored grant still works.
	if err := sc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	peb.Stop()
	c.CloseIdleConnections()
	start := time.Now()
	startTLSSidecar(t, cfgPath, c.Client, public, 20*time.Second)
	t.Logf("restart without the CA took %v", time.Since(start).Round(time.Millisecond))
	resp, err = c.Get(public + "/Panopto/api/v1/folders")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := servedSerial(t, resp); got.Cmp(obtained) != 0 {
		t.Errorf("after restart served serial %s, want the stored %s", got, obtained)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("folders after restart: %d", resp.StatusCode)
	}
}

// replaceFile swaps path's content by rename, as a rotation tool does.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// handshakeSerial opens a new verified TLS connection to addr and returns
// the serial of the leaf served.
func handshakeSerial(addr string, roots *x509.CertPool) (*big.Int, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "sidecar.test"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// TestServeHTTPSWithFiles: the sidecar serves the certificate from
// cert_file/key_file, picks up a rotated pair without a restart, and keeps
// serving it when the files are then broken.
func TestServeHTTPSWithFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	public := "https://" + addr
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{public + "/redirect"}})
	one, two := testsupport.NewCert(t, "sidecar.test", nil, true), testsupport.NewCert(t, "sidecar.test", nil, true)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	replaceFile(t, certFile, one.CertPEM)
	replaceFile(t, keyFile, one.KeyPEM)

	cfg := fmt.Sprintf(`listen: %s
public_url: %s
upstream: %s
token_store: {type: file, path: %s}
log: {level: debug, format: json}
shutdown_grace: 5s
tls: {mode: files, cert_file: %s, key_file: %s}
`, addr, public, pan.URL, filepath.Join(dir, "panopto-token.json"), certFile, keyFile)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AddCert(one.Cert)
	roots.AddCert(two.Cert)
	// Only the first certificate is trusted by this client: the handshake
	// itself proves which one is served.
	onlyOne := x509.NewCertPool()
	onlyOne.AddCert(one.Cert)
	c := newHTTPSClient(t, onlyOne, "", "")
	sc := startTLSSidecar(t, cfgPath, c.Client, public, 10*time.Second)

	resp, err := c.Get(public + "/-/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := servedSerial(t, resp); got.Cmp(one.Cert.SerialNumber) != 0 {
		t.Fatalf("served serial %s, want %s", got, one.Cert.SerialNumber)
	}

	// The healthcheck subcommand: the certificate names sidecar.test and
	// 127.0.0.1 but is not publicly trusted, so it needs -insecure.
	var out strings.Builder
	if err := run(context.Background(), []string{"healthcheck", "-addr", public}, noEnv, &out, io.Discard); err == nil {
		t.Error("healthcheck trusted a self-signed certificate without -insecure")
	}
	out.Reset()
	if err := run(context.Background(), []string{"healthcheck", "-insecure", "-addr", public}, noEnv, &out, io.Discard); err != nil || strings.TrimSpace(out.String()) != "ok" {
		t.Errorf("healthcheck -insecure: %v %q", err, out.String())
	}

	// Rotate: key first, then certificate (a half-done rotation is refused
	// and retried), as cert-manager's secret update looks from here.
	replaceFile(t, keyFile, two.KeyPEM)
	replaceFile(t, certFile, two.CertPEM)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := handshakeSerial(addr, roots)
		if err == nil && got.Cmp(two.Cert.SerialNumber) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated certificate not served: last %v %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Break the certificate file: the rotated certificate stays.
	failures := strings.Count(sc.Logs.String(), "tls certificate reload failed")
	replaceFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"))
	deadline = time.Now().Add(15 * time.Second)
	for strings.Count(sc.Logs.String(), "tls certificate reload failed") <= failures {
		if time.Now().After(deadline) {
			t.Fatal("the broken certificate file was never reported")
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, err := handshakeSerial(addr, roots)
	if err != nil || got.Cmp(two.Cert.SerialNumber) != 0 {
		t.Fatalf("after a broken file served %v (%v), want the rotated %s", got, err, two.Cert.SerialNumber)
	}
	// Nothing of the key reaches the log.
	if logs := sc.Logs.String(); strings.Contains(logs, "PRIVATE KEY") || strings.Contains(logs, string(two.KeyPEM[40:80])) {
		t.Error("the log holds key material")
	}
}

func noEnv(string) string { return "" }

// TestTLSRefusedCombinations: impossible or broken TLS settings stop serve
// at once with an error naming the problem, and leave nothing listening.
func TestTLSRefusedCombinations(t *testing.T) {
	t.Parallel()
	good := testsupport.NewCert(t, "sidecar.test", nil, true)
	other := testsupport.NewCert(t, "sidecar.test", nil, true)
	tests := []struct {
		name  string
		tls   func(dir string) string
		wants []string
	}{
		{
			name:  "acme without domains",
			tls:   func(dir string) string { return "tls: {mode: acme, acme: {storage: " + dir + "}}" },
			wants: []string{"tls.acme.domains", "at least one domain"},
		},
		{
			name: "acme with a URL for a domain",
			tls: func(dir string) string {
				return "tls: {mode: acme, acme: {domains: ['https://sidecar.test'], storage: " + dir + "}}"
			},
			wants: []string{"tls.acme.domains[0]", "bare host name"},
		},
		{
			name:  "files mode without files",
			tls:   func(string) string { return "tls: {mode: files}" },
			wants: []string{"tls.cert_file", "tls.key_file"},
		},
		{
			name: "certificate file that does not parse",
			tls: func(dir string) string {
				writeTestFile(t, filepath.Join(dir, "tls.crt"), []byte("this is not PEM\n"))
				writeTestFile(t, filepath.Join(dir, "tls.key"), good.KeyPEM)
				return fmt.Sprintf("tls: {mode: files, cert_file: %s, key_file: %s}", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
			},
			wants: []string{"tls", "tls.crt"},
		},
		{
			name: "key that does not match the certificate",
			tls: func(dir string) string {
				writeTestFile(t, filepath.Join(dir, "tls.crt"), good.CertPEM)
				writeTestFile(t, filepath.Join(dir, "tls.key"), other.KeyPEM)
				return fmt.Sprintf("tls: {mode: files, cert_file: %s, key_file: %s}", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
			},
			wants: []string{"tls", "tls.key", "does not match"},
		},
		{
			name: "missing key file",
			tls: func(dir string) string {
				writeTestFile(t, filepath.Join(dir, "tls.crt"), good.CertPEM)
				return fmt.Sprintf("tls: {mode: files, cert_file: %s, key_file: %s}", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "missing.key"))
			},
			wants: []string{"tls", "missing.key"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			addr := childAddr(t)
			cfg := fmt.Sprintf("listen: %s\nupstream: http://127.0.0.1:1\ntoken_store: {type: file, path: %s}\nlog: {format: json}\n%s\n",
				addr, filepath.Join(dir, "token.json"), tc.tls(dir))
			path := filepath.Join(dir, "config.yaml")
			writeTestFile(t, path, []byte(cfg))

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			env := testEnv(nil)
			logs := &testsupport.SyncBuffer{}
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"serve", "-config", path}, env, io.Discard, logs) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				cancel()
				<-done
				t.Fatalf("serve did not refuse within 5s\n%s", logs.String())
			}
			if err == nil {
				t.Fatal("serve returned no error")
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("refusal took %v", time.Since(start))
			}
			if code := exitCode(err); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(logs.String(), "PRIVATE KEY") {
				t.Error("key material in the error or log")
			}
			if strings.Contains(logs.String(), `"msg":"listening"`) {
				t.Errorf("serve reported listening:\n%s", logs.String())
			}
			// Nothing is left listening on the address.
			ln, lerr := net.Listen("tcp", addr)
			if lerr != nil {
				t.Fatalf("%s still bound after the refusal: %v", addr, lerr)
			}
			ln.Close()
		})
	}
}

// TestACMEWaitRefusesConnections: while no certificate is held (the CA is
// unreachable and serve keeps retrying), the listen address refuses
// connections instead of accepting them into a handshake nobody answers;
// stopping serve then ends the wait with an error naming the domain.
func TestACMEWaitRefusesConnections(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := childAddr(t)
	httpPort := childPort(t)
	alpnPort := childPort(t)
	cfg := fmt.Sprintf(`listen: %s
upstream: http://127.0.0.1:1
token_store: {type: file, path: %s}
log: {level: debug, format: json}
tls:
  mode: acme
  acme:
    domains: [sidecar.test]
    email: ops@sidecar.test
    directory: https://127.0.0.1:1/dir
    storage: %s
    http_port: %s
    tls_alpn_port: %s
`, addr, filepath.Join(dir, "token.json"), filepath.Join(dir, "certmagic"), httpPort, alpnPort)
	path := filepath.Join(dir, "config.yaml")
	writeTestFile(t, path, []byte(cfg))
	env := func(k string) string {
		if k == "PANOPTO_CLIENT_ID" || k == "PANOPTO_CLIENT_SECRET" {
			return "x"
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testsupport.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-config", path}, env, io.Discard, logs) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "obtaining certificate failed, retrying") {
		select {
		case err := <-done:
			t.Fatalf("serve returned before retrying: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed attempt was logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s accepts connections while no certificate is held", addr)
	}

	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no certificate") || !strings.Contains(err.Error(), "sidecar.test") {
			t.Errorf("serve stopped during the wait with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not stop during the ACME wait")
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
