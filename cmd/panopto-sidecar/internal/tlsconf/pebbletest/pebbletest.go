// Package pebbletest starts a real ACME server for tests: Pebble, with
// pebble-challtestsrv as its DNS resolver answering 127.0.0.1 for every name,
// so Pebble's validation authority connects to the challenge listeners of
// the code under test. Everything listens on 127.0.0.1.
//
// The binaries come from $PEBBLE_BIN (the pebble binary, with
// pebble-challtestsrv beside it), else $(go env GOPATH)/bin; .ci/pebble.sh
// installs them. When they are missing the test is skipped, or fails when
// PANOPTO_SIDECAR_REQUIRE_PEERS=1.
package pebbletest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

// Domain is a name the tests can get a certificate for: challtestsrv
// resolves it (as every name) to 127.0.0.1.
const Domain = "sidecar.test"

// Server is a running Pebble with its DNS stand-in.
type Server struct {
	Directory   string // ACME directory URL
	Mgmt        string // management API base URL (roots, intermediates)
	HTTPPort    int    // where Pebble's VA sends HTTP-01 validation
	TLSALPNPort int    // where Pebble's VA sends TLS-ALPN-01 validation
	MiniCA      string // PEM file of the CA behind Pebble's own HTTPS certificate

	stop func()
}

// Bins finds pebble and pebble-challtestsrv, skipping (or failing, when
// PANOPTO_SIDECAR_REQUIRE_PEERS=1) if either is missing.
func Bins(t testing.TB) (pebbleBin, challBin string) {
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

// FreePort returns a 127.0.0.1 port that was free for both TCP and UDP a
// moment ago (the DNS server needs both).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
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

// certsDir finds testdata/tls/pebble at the module root, walking up from the
// test's working directory (its package directory).
func certsDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "tls", "pebble")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("pebbletest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Start runs Pebble with real validation (PEBBLE_VA_ALWAYS_VALID not set),
// one 90-day profile, and challtestsrv answering 127.0.0.1 for every name.
// Both processes are killed when the test ends, or earlier by Stop.
func Start(t testing.TB) *Server {
	t.Helper()
	pebbleBin, challBin := Bins(t)
	root := certsDir(t)
	s := &Server{
		HTTPPort:    FreePort(t),
		TLSALPNPort: FreePort(t),
		MiniCA:      filepath.Join(root, "minica.pem"),
	}
	acmePort, mgmtPort, dnsPort, challMgmtPort := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	s.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	s.Mgmt = fmt.Sprintf("https://127.0.0.1:%d", mgmtPort)

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
		"httpPort":                       s.HTTPPort,
		"tlsPort":                        s.TLSALPNPort,
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
	if err := os.WriteFile(confFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s.stop = startProcess(t, "pebble", env, pebbleBin,
		"-config", confFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))

	client := s.Client(t)
	testsupport.WaitFor(t, 10*time.Second, "pebble's directory", func() bool {
		resp, err := client.Get(s.Directory)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	testsupport.WaitFor(t, 10*time.Second, "challtestsrv", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", challMgmtPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// Stop kills Pebble (challtestsrv stays until the test ends): from then on
// nothing answers at the directory. It is idempotent.
func (s *Server) Stop() { s.stop() }

// Client returns an HTTP client that trusts Pebble's own HTTPS certificate.
func (s *Server) Client(t testing.TB) *http.Client {
	t.Helper()
	data, err := os.ReadFile(s.MiniCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no PEM certificate", s.MiniCA)
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 5 * time.Second, Transport: tr}
}

// IssuedRoots fetches the root Pebble issues certificates under; Pebble
// generates a new one at each start, so fetch it while Pebble runs.
func (s *Server) IssuedRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	resp, err := s.Client(t).Get(s.Mgmt + "/roots/0")
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

// startProcess runs bin until the returned stop is called or the test ends;
// its output is logged if the test failed.
func startProcess(t testing.TB, name string, env []string, bin string, args ...string) func() {
	t.Helper()
	out := &testsupport.SyncBuffer{}
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
