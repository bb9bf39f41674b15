package tlsconf

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"go.uber.org/zap"
)

func TestModeNone(t *testing.T) {
	for _, mode := range []string{"", ModeNone} {
		m, err := New(context.Background(), Options{Mode: mode, CertFile: "ignored"}, slog.New(&logRecorder{}))
		if m != nil || err != nil {
			t.Errorf("mode %q: New = %v, %v; want nil, nil", mode, m, err)
		}
		m.Close() // a nil Manager closes quietly
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	good := testsupport.NewCert(t, "good", nil, true)
	other := testsupport.NewCert(t, "other", nil, true)
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	certFile, keyFile := file("cert.pem", good.CertPEM), file("key.pem", good.KeyPEM)
	otherKey := file("other-key.pem", other.KeyPEM)
	garbage := file("garbage.pem", []byte("hello"))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name string
		o    Options
		want []string // every one must appear in the error
	}{
		{"unknown mode", Options{Mode: "self-signed"}, []string{`unknown mode "self-signed"`}},
		{"files without paths", Options{Mode: ModeFiles}, []string{"needs cert_file", "needs key_file"}},
		{"missing cert", Options{Mode: ModeFiles, CertFile: missing, KeyFile: keyFile}, []string{"read certificate", "missing.pem"}},
		{"garbage cert", Options{Mode: ModeFiles, CertFile: garbage, KeyFile: keyFile}, []string{"garbage.pem", "failed to find any PEM data"}},
		{"key of another cert", Options{Mode: ModeFiles, CertFile: certFile, KeyFile: otherKey}, []string{"does not match"}},
		{"bad client ca", Options{Mode: ModeFiles, CertFile: certFile, KeyFile: keyFile, ClientCAFile: garbage}, []string{"client ca", "no PEM certificate"}},
		{"acme without domains or storage", Options{Mode: ModeACME}, []string{"at least one domain", "storage directory"}},
		{"acme bad domain and ports", Options{Mode: ModeACME, ACME: ACME{Domains: []string{"a b"}, Storage: dir, HTTPPort: 70000, TLSALPNPort: -1}},
			[]string{`"a b"`, "http_port 70000", "tls_alpn_port -1"}},
		{"acme same ports", Options{Mode: ModeACME, ACME: ACME{Domains: []string{"x.test"}, Storage: dir, HTTPPort: 5002, TLSALPNPort: 5002}}, []string{"both 5002"}},
		{"acme bad ca root", Options{Mode: ModeACME, ACME: ACME{Domains: []string{"x.test"}, Storage: dir, CARoots: []string{garbage}}}, []string{"ca root", "no PEM certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(context.Background(), tt.o, slog.New(&logRecorder{}))
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error quotes key material: %v", err)
			}
		})
	}
}

// TestACMEGivesUpWithContext: with no reachable CA, New keeps retrying
// and returns once ctx is done, without a Manager.
func TestACMEGivesUpWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	rec := &logRecorder{}
	start := time.Now()
	m, err := New(ctx, Options{Mode: ModeACME, ACME: ACME{
		Domains:   []string{"sidecar.test"},
		Email:     "ops@sidecar.test",
		Directory: "https://127.0.0.1:1/dir", // nothing listens on port 1
		Storage:   t.TempDir(),
	}}, slog.New(rec))
	if err == nil {
		m.Close()
		t.Fatal("New succeeded with no CA")
	}
	if !strings.Contains(err.Error(), "context deadline exceeded") || !strings.Contains(err.Error(), "sidecar.test") {
		t.Errorf("error = %v", err)
	}
	if rec.count("retrying") < 1 {
		t.Errorf("no retry was logged:\n%s", rec.all())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("New returned %v after ctx ended", d)
	}
}

func TestZapBridge(t *testing.T) {
	rec := &logRecorder{}
	zl := newZapLogger(slog.New(rec)).Named("obtain").With(zap.String("identifier", "sidecar.test"))
	zl.Error("could not get certificate", zap.Error(context.Canceled), zap.Int("attempt", 2))
	zl.Debug("detail")
	got := rec.all()
	for _, w := range []string{"ERROR could not get certificate", "certmagic=obtain", "identifier=sidecar.test", "err=context canceled", "attempt=2", "DEBUG detail"} {
		if !strings.Contains(got, w) {
			t.Errorf("log %q lacks %q", got, w)
		}
	}
}
