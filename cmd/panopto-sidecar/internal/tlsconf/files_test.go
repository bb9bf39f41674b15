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
	c := newCert(t, "one", nil, true)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, c.certPEM)
	writeFile(t, keyFile, c.keyPEM)
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
	roots.AddCert(c.cert)
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
	one := newCert(t, "one", nil, true)
	writeFile(t, certFile, one.certPEM)
	writeFile(t, keyFile, one.keyPEM)
	rec := &logRecorder{}
	m := startFiles(t, certFile, keyFile, rec)
	addr := serve(t, m)

	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(one.cert.SerialNumber) != 0 {
		t.Fatalf("served %s, want the first certificate", got.Subject)
	}

	// Rotation: both files replaced.
	two := newCert(t, "two", nil, true)
	writeAtomic(t, certFile, two.certPEM)
	writeAtomic(t, keyFile, two.keyPEM)
	waitFor(t, "the rotated certificate", func() bool {
		return servedCert(t, addr, "").SerialNumber.Cmp(two.cert.SerialNumber) == 0
	})

	// A broken certificate file: reported, the current certificate kept.
	failures := rec.count("reload failed")
	writeAtomic(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	waitFor(t, "the reload failure", func() bool { return rec.count("reload failed") > failures })
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(two.cert.SerialNumber) != 0 {
		t.Fatalf("after a broken file, served %s, want the second certificate", got.Subject)
	}

	// A certificate that does not match the key: refused too.
	failures = rec.count("reload failed")
	three := newCert(t, "three", nil, true)
	writeAtomic(t, certFile, three.certPEM)
	waitFor(t, "the mismatch failure", func() bool { return rec.count("reload failed") > failures })
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(two.cert.SerialNumber) != 0 {
		t.Fatalf("after a mismatched pair, served %s, want the second certificate", got.Subject)
	}
	// An unchanged broken pair is reported once, not on every poll.
	n := rec.count("reload failed")
	time.Sleep(100 * time.Millisecond) // five poll intervals
	if rec.count("reload failed") != n {
		t.Errorf("an unchanged broken pair was reported again:\n%s", rec.all())
	}

	// The rotation completes with the key: the third certificate is served.
	writeAtomic(t, keyFile, three.keyPEM)
	waitFor(t, "the third certificate", func() bool {
		return servedCert(t, addr, "").SerialNumber.Cmp(three.cert.SerialNumber) == 0
	})

	// A removed file: reported, kept.
	failures = rec.count("reload failed")
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missing-file failure", func() bool { return rec.count("reload failed") > failures })
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(three.cert.SerialNumber) != 0 {
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
	publish := func(name string, c *testCert) {
		ts := filepath.Join(dir, name)
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(ts, "tls.crt"), c.certPEM)
		writeFile(t, filepath.Join(ts, "tls.key"), c.keyPEM)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	one := newCert(t, "one", nil, true)
	publish("..2025_01_01_00_00_00.1", one)
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	m := startFiles(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), &logRecorder{})
	addr := serve(t, m)
	if got := servedCert(t, addr, ""); got.SerialNumber.Cmp(one.cert.SerialNumber) != 0 {
		t.Fatalf("served %s, want the first certificate", got.Subject)
	}

	two := newCert(t, "two", nil, true)
	publish("..2025_01_02_00_00_00.2", two)
	if err := os.RemoveAll(filepath.Join(dir, "..2025_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the certificate from the swapped ..data", func() bool {
		return servedCert(t, addr, "").SerialNumber.Cmp(two.cert.SerialNumber) == 0
	})
}

func TestClientCertificatesRequired(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, "client ca", nil, true)
	caFile := filepath.Join(dir, "client-ca.pem")
	writeFile(t, caFile, ca.certPEM)
	server := newCert(t, "server", nil, true)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, server.certPEM)
	writeFile(t, keyFile, server.keyPEM)

	m, err := New(context.Background(), Options{
		Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile,
	}, slog.New(&logRecorder{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	addr := serve(t, m)

	roots := x509.NewCertPool()
	roots.AddCert(server.cert)
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

	good := newCert(t, "ontrack", ca, false)
	if err := get(good.tlsCert(t)); err != nil {
		t.Errorf("client certificate from the CA refused: %v", err)
	}
	if err := get(); err == nil {
		t.Error("a client without a certificate was served")
	}
	stranger := newCert(t, "stranger", nil, false)
	if err := get(stranger.tlsCert(t)); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
}
