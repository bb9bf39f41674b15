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
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

func startFiles(t *testing.T, certFile, keyFile string, rec *logRecorder) *Manager {
	t.Helper()
	m, err := New(context.Background(), Options{
		Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile,
		PollInterval: 20 * time.Millisecond,
	}, slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestFilesServesVerifiedHTTPS(t *testing.T) {
	dir := t.TempDir()
	c := testsupport.NewCert(t, "one", nil, true)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, c.CertPEM)
	writeFile(t, keyFile, c.KeyPEM)
	m := startFiles(t, certFile, keyFile, &logRecorder{})

	cfg := m.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	if strings.Join(cfg.NextProtos, ",") != "h2,http/1.1" {
		t.Errorf("NextProtos = %v", cfg.NextProtos)
	}
	addr := serve(t, m)

	roots := x509.NewCertPool()
	roots.AddCert(c.Cert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello over HTTP/2.0" {
		t.Errorf("body = %q, want HTTP/2 through ALPN", body)
	}

	// TLS 1.1 is refused.
	_, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

func TestFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	one := testsupport.NewCert(t, "one", nil, true)
	writeFile(t, certFile, one.CertPEM)
	writeFile(t, keyFile, one.KeyPEM)
	rec := &logRecorder{}
	m := startFiles(t, certFile, keyFile, rec)
	addr := serve(t, m)

	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(one.Cert.SerialNumber) != 0 {
		t.Fatalf("served %s, want the first certificate", got.Subject)
	}

	// Rotation: both files replaced.
	two := testsupport.NewCert(t, "two", nil, true)
	writeAtomic(t, certFile, two.CertPEM)
	writeAtomic(t, keyFile, two.KeyPEM)
	testsupport.WaitFor(t, 10*time.Second, "the rotated certificate", func() bool {
		return servedCert(t, addr, "").SerialNumber.Cmp(two.Cert.SerialNumber) == 0
	})

	// A broken certificate file: reported, the current certificate kept.
	failures := rec.count("reload failed")
	writeAtomic(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	testsupport.WaitFor(t, 10*time.Second, "the reload failure", func() bool { return rec.count("reload failed") > failures })
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(two.Cert.SerialNumber) != 0 {
		t.Fatalf("after a broken file, served %s, want the second certificate", got.Subject)
	}

	// A certificate that does not match the key: refused too.
	failures = rec.count("reload failed")
	three := testsupport.NewCert(t, "three", nil, true)
	writeAtomic(t, certFile, three.CertPEM)
	testsupport.WaitFor(t, 10*time.Second, "the mismatch failure", func() bool { return rec.count("reload failed") > failures })
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(two.Cert.SerialNumber) != 0 {
		t.Fatalf("after a mismatched pair, served %s, want the second certificate", got.Subject)
	}
	// An unchanged broken pair is reported once, not on every poll.
	n := rec.count("reload failed")
	time.Sleep(100 * time.Millisecond) // five poll intervals
	if rec.count("reload failed") != n {
		t.Errorf("an unchanged broken pair was reported again:\n%s", rec.all())
	}

	// The rotation completes with the key: the third certificate is served.
	writeAtomic(t, keyFile, three.KeyPEM)
	testsupport.WaitFor(t, 10*time.Second, "the third certificate", func() bool {
		return servedCert(t, addr, "").SerialNumber.Cmp(three.Cert.SerialNumber) == 0
	})

	// A removed file: reported, kept.
	failures = rec.count("reload failed")
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "the missing-file failure", func() bool { return rec.count("reload failed") > failures })
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(three.Cert.SerialNumber) != 0 {
		t.Fatalf("after a removed key, served %s, want the third certificate", got.Subject)
	}
	if strings.Contains(rec.all(), "PRIVATE KEY") {
		t.Error("key material in the log")
	}
}

// TestFilesKubernetesSecretMount rotates the way the kubelet updates a
// mounted secret: the files are symlinks through ..data, and ..data is
// swapped to a new timestamped directory in one rename.
func TestFilesKubernetesSecretMount(t *testing.T) {
	dir := t.TempDir()
	publish := func(name string, c *testsupport.Cert) {
		ts := filepath.Join(dir, name)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(ts, "tls.crt"), c.CertPEM)
		writeFile(t, filepath.Join(ts, "tls.key"), c.KeyPEM)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	one := testsupport.NewCert(t, "one", nil, true)
	publish("..2025_01_01_00_00_00.1", one)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	m := startFiles(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), &logRecorder{})
	addr := serve(t, m)
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(one.Cert.SerialNumber) != 0 {
		t.Fatalf("served %s, want the first certificate", got.Subject)
	}

	two := testsupport.NewCert(t, "two", nil, true)
	publish("..2025_01_02_00_00_00.2", two)
	if err := os.RemoveAll(filepath.Join(dir, "..2025_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 10*time.Second, "the certificate from the swapped ..data", func() bool {
		return servedCert(t, addr, "").SerialNumber.Cmp(two.Cert.SerialNumber) == 0
	})
}

func TestClientCertificatesRequired(t *testing.T) {
	dir := t.TempDir()
	ca := testsupport.NewCert(t, "client ca", nil, true)
	caFile := filepath.Join(dir, "client-ca.pem")
	writeFile(t, caFile, ca.CertPEM)
	server := testsupport.NewCert(t, "server", nil, true)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, server.CertPEM)
	writeFile(t, keyFile, server.KeyPEM)

	m, err := New(context.Background(), Options{
		Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile,
	}, slog.New(&logRecorder{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	addr := serve(t, m)

	roots := x509.NewCertPool()
	roots.AddCert(server.Cert)
	get := func(certs ...tls.Certificate) error {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs},
		}}
		defer client.CloseIdleConnections()
		resp, err := client.Get("https://" + addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}

	good := testsupport.NewCert(t, "ontrack", ca, false)
	if err := get(good.TLSCert(t)); err != nil {
		t.Errorf("client certificate from the CA refused: %v", err)
	}
	if err := get(); err == nil {
		t.Error("a client without a certificate was served")
	}
	stranger := testsupport.NewCert(t, "stranger", nil, false)
	if err := get(stranger.TLSCert(t)); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
}
