package tlsconf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const testDomain = "sidecar.test"

// pebble is a running Pebble ACME server with pebble-challtestsrv as its
// DNS resolver, all on 127.0.0.1.
type pebble struct {
	directory   string // ACME directory URL
	mgmt        string // management API base URL
	httpPort    int    // where Pebble's VA sends HTTP-01 validation
	tlsPort     int    // where Pebble's VA sends TLS-ALPN-01 validation
	minica      string // PEM file of the CA behind Pebble's own HTTPS certificate
	stopPebble  func()
	stopPebbled bool
}

// pebbleBins finds pebble and pebble-challtestsrv: $PEBBLE_BIN (the pebble
// binary; challtestsrv beside it), else $(go env GOPATH)/bin. Missing binaries
// skip the test unless PANOPTO_SIDECAR_REQUIRE_PEERS=1.
func pebbleBins(t *testing.T) (pebbleBin, challBin string) {
	t.Helper()
	pebbleBin = os.Getenv("PEBBLE_BIN")
	if pebbleBin == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err == nil {
			gopath := strings.SplitN(strings.TrimSpace(string(out)), string(os.PathListSeparator), 2)[0]
			pebbleBin = filepath.Join(gopath, "bin", "pebble")
		}
	}
	challBin = filepath.Join(filepath.Dir(pebbleBin), "pebble-challtestsrv")
	for _, b := range []string{pebbleBin, challBin} {
		if fi, err := os.Stat(b); err != nil || fi.IsDir() {
			msg := fmt.Sprintf("%s not found; run .ci/pebble.sh or set PEBBLE_BIN", b)
			if os.Getenv("PANOPTO_SIDECAR_REQUIRE_PEERS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return pebbleBin, challBin
}

func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The DNS server needs the UDP port too.
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

// syncBuffer collects a child process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startProcess(t *testing.T, name string, env []string, bin string, args ...string) func() {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return stop
}

// startPebble runs Pebble with real validation (PEBBLE_VA_ALWAYS_VALID not
// set), one 90-day profile, and challtestsrv answering 127.0.0.1 for every
// name, so the VA connects to certmagic's challenge listeners.
func startPebble(t *testing.T) *pebble {
	t.Helper()
	pebbleBin, challBin := pebbleBins(t)
	root, err := filepath.Abs("../../../../testdata/tls/pebble")
	if err != nil {
		t.Fatal(err)
	}
	p := &pebble{
		httpPort: freePort(t),
		tlsPort:  freePort(t),
		minica:   filepath.Join(root, "minica.pem"),
	}
	acmePort, mgmtPort, dnsPort, challMgmtPort := freePort(t), freePort(t), freePort(t), freePort(t)
	p.directory = fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	p.mgmt = fmt.Sprintf("https://127.0.0.1:%d", mgmtPort)

	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")

	startProcess(t, "pebble-challtestsrv", env, challBin,
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", challMgmtPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")

	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    filepath.Join(root, "localhost-cert.pem"),
		"privateKey":                     filepath.Join(root, "localhost-key.pem"),
		"httpPort":                       p.httpPort,
		"tlsPort":                        p.tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "90 days", "validityPeriod": 7776000},
		},
	}}
	data, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(t.TempDir(), "pebble-config.json")
	writeFile(t, confFile, data)
	p.stopPebble = startProcess(t, "pebble", env, pebbleBin,
		"-config", confFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))

	client := p.client(t)
	waitFor(t, "pebble's directory", func() bool {
		resp, err := client.Get(p.directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	waitFor(t, "challtestsrv", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", challMgmtPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// client trusts Pebble's own HTTPS certificate.
func (p *pebble) client(t *testing.T) *http.Client {
	t.Helper()
	pool, err := loadPool(p.minica)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// issuedRoots fetches the root Pebble issues certificates under; it is
// generated at each Pebble start.
func (p *pebble) issuedRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client(t).Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble roots: %d %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("pebble roots: no PEM in %q", data)
	}
	return pool
}

func (p *pebble) options(storage, email string) Options {
	return Options{Mode: ModeACME, ACME: ACME{
		Domains:     []string{testDomain},
		Email:       email,
		Directory:   p.directory,
		CARoots:     []string{p.minica},
		Storage:     storage,
		HTTPPort:    p.httpPort,
		TLSALPNPort: p.tlsPort,
	}}
}

// getVerified fetches https://addr/ with ServerName = the test domain,
// verifying the chain against roots, and returns the served leaf.
func getVerified(t *testing.T, addr string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: testDomain}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("verified GET: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "hello over HTTP/2.0" {
		t.Errorf("body = %q", body)
	}
	return resp.TLS.PeerCertificates[0]
}

// TestACMERestartUsesStorage: a new Manager on the same storage serves the
// stored certificate with Pebble gone, and a failed forced renewal keeps
// serving it.
//
// It also obtains without an email, and must run first among the ACME
// tests: certmagic remembers the first email it sees in a package variable,
// and with none it would ask for one on stdin, printing to stdout.
func TestACMERestartUsesStorage(t *testing.T) {
	p := startPebble(t)
	storage := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	rec := &logRecorder{}
	stdout := os.Stdout
	capture, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = capture
	first, err := New(ctx, p.options(storage, ""), slog.New(rec))
	os.Stdout = stdout
	if err != nil {
		t.Fatalf("New: %v\nlog:\n%s", err, rec.all())
	}
	if printed, _ := os.ReadFile(capture.Name()); len(printed) > 0 {
		t.Errorf("New printed to stdout:\n%s", printed)
	}
	roots := p.issuedRoots(t)
	obtained := getVerified(t, serve(t, first), roots)
	first.Close()

	p.stopPebble() // nothing answers at the directory from here on

	rec = &logRecorder{}
	second, err := New(ctx, p.options(storage, ""), slog.New(rec))
	if err != nil {
		t.Fatalf("restart without the CA: %v\nlog:\n%s", err, rec.all())
	}
	t.Cleanup(second.Close)
	addr := serve(t, second)
	if got := getVerified(t, addr, roots); got.SerialNumber.Cmp(obtained.SerialNumber) != 0 {
		t.Fatalf("restart served serial %s, want the stored %s", got.SerialNumber, obtained.SerialNumber)
	}

	// Renewal that cannot reach the CA fails and leaves the certificate in place.
	renewCtx, renewCancel := context.WithTimeout(ctx, 10*time.Second)
	defer renewCancel()
	if err := second.magic.RenewCertSync(renewCtx, testDomain, true); err == nil {
		t.Fatal("a forced renewal succeeded with Pebble stopped")
	}
	if got := getVerified(t, addr, roots); got.SerialNumber.Cmp(obtained.SerialNumber) != 0 {
		t.Fatalf("after the failed renewal served serial %s, want %s", got.SerialNumber, obtained.SerialNumber)
	}
}

func TestACMEObtainsFromPebble(t *testing.T) {
	p := startPebble(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	rec := &logRecorder{}
	m, err := New(ctx, p.options(t.TempDir(), "ops@sidecar.test"), slog.New(rec))
	if err != nil {
		t.Fatalf("New: %v\nlog:\n%s", err, rec.all())
	}
	t.Cleanup(m.Close)

	leaf := getVerified(t, serve(t, m), p.issuedRoots(t))
	if leaf.DNSNames[0] != testDomain {
		t.Errorf("certificate for %v", leaf.DNSNames)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 89*24*time.Hour || d > 91*24*time.Hour {
		t.Errorf("validity %v, want the 90-day profile", d)
	}
	if rec.count("certmagic=") == 0 {
		t.Errorf("certmagic's log did not reach slog:\n%s", rec.all())
	}
	// A client that sends no SNI gets the same certificate.
	if got := servedCert(t, serve(t, m), ""); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("without SNI served %s", got.Subject)
	}
}
