package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/tlsconf/pebbletest"
)

const testDomain = pebbletest.Domain

// pebble is a running Pebble ACME server with pebble-challtestsrv as its
// DNS resolver, all on 127.0.0.1.
type pebble struct {
	*pebbletest.Server
}

// startPebble runs Pebble with real validation; see pebbletest.Start.
func startPebble(t *testing.T) *pebble {
	t.Helper()
	return &pebble{pebbletest.Start(t)}
}

// issuedRoots fetches the root Pebble issues certificates under; it is
// generated at each Pebble start.
func (p *pebble) issuedRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	return p.IssuedRoots(t)
}

func (p *pebble) stopPebble() { p.Stop() }

func (p *pebble) options(storage, email string) Options {
	return Options{Mode: ModeACME, ACME: ACME{
		Domains:     []string{testDomain},
		Email:       email,
		Directory:   p.Directory,
		CARoots:     []string{p.MiniCA},
		Storage:     storage,
		HTTPPort:    p.HTTPPort,
		TLSALPNPort: p.TLSALPNPort,
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
