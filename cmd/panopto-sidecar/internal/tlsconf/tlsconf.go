// Package tlsconf serves the sidecar's listener over TLS: certificates from
// files that are reloaded when they change (cert-manager, Kubernetes secret
// mounts), or obtained and renewed over ACME with certmagic.
//
// Either way the current certificate sits behind the handshake callback, so a
// reload or renewal takes effect on the next connection without a restart,
// and a failed reload or renewal keeps the certificate that is being served.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// Modes accepted in Options.Mode.
const (
	ModeNone  = "none"
	ModeFiles = "files"
	ModeACME  = "acme"
)

// DefaultPollInterval is how often files mode checks the certificate and key
// files for a change when Options.PollInterval is zero.
const DefaultPollInterval = 5 * time.Second

// Options selects how the listener gets its certificate.
type Options struct {
	Mode string // none | files | acme; "" is none

	// files: PEM certificate chain and private key. Both are read again when
	// their content changes.
	CertFile, KeyFile string
	// PollInterval is how often files mode looks at the files; default 5s.
	// Polling the content (not inotify) follows Kubernetes secret mounts,
	// which swap a ..data symlink rather than write the files.
	PollInterval time.Duration

	ACME ACME

	// ClientCAFile, when set, makes the listener require a client
	// certificate that chains to one of the PEM certificates in this file
	// (mTLS). It is read once, at start.
	ClientCAFile string
}

// ACME configures certmagic.
type ACME struct {
	Domains     []string
	Email       string
	Directory   string   // ACME directory URL; default Let's Encrypt production
	CARoots     []string // PEM files trusted for the ACME server itself; default the system roots
	Storage     string   // certmagic storage directory (account, keys, certificates); required
	HTTPPort    int      // HTTP-01 challenge port certmagic listens on; default 80
	TLSALPNPort int      // TLS-ALPN-01 challenge port certmagic listens on; default 443
}

// Manager owns the listener's certificate. Its methods are safe for
// concurrent use.
type Manager struct {
	logger  *slog.Logger
	base    *tls.Config // TLS settings without the certificate source
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)

	// files mode
	files *fileLoader

	// acme mode
	magic *certmagic.Config
	cache *certmagic.Cache

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

// New starts serving certificates as o describes. Mode none returns
// (nil, nil): the caller serves plain HTTP.
//
// In files mode the files must parse and match, or New fails. In acme mode
// New blocks until a certificate is held, loaded from storage or obtained
// from the CA, retrying with backoff until ctx is done: the sidecar never
// listens without a certificate. Renewal then runs in the background.
func New(ctx context.Context, o Options, logger *slog.Logger) (*Manager, error) {
	if logger == nil {
		return nil, errors.New("tls: logger is required")
	}
	if o.Mode == "" || o.Mode == ModeNone {
		return nil, nil
	}
	if err := o.validate(); err != nil {
		return nil, err
	}

	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
	if o.ClientCAFile != "" {
		pool, err := loadPool(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client ca: %w", err)
		}
		base.ClientCAs = pool
		base.ClientAuth = tls.RequireAndVerifyClientCert
	}

	m := &Manager{
		logger: logger.With("component", "tls"),
		base:   base,
		done:   make(chan struct{}),
	}
	switch o.Mode {
	case ModeFiles:
		if err := m.startFiles(o); err != nil {
			return nil, err
		}
	case ModeACME:
		if err := m.startACME(ctx, o); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// validate refuses impossible combinations with every problem at once.
func (o Options) validate() error {
	var errs []error
	switch o.Mode {
	case ModeFiles:
		if o.CertFile == "" {
			errs = append(errs, errors.New("tls: files mode needs cert_file"))
		}
		if o.KeyFile == "" {
			errs = append(errs, errors.New("tls: files mode needs key_file"))
		}
	case ModeACME:
		a := o.ACME
		if len(a.Domains) == 0 {
			errs = append(errs, errors.New("tls: acme mode needs at least one domain"))
		}
		for _, d := range a.Domains {
			if !certmagic.SubjectQualifiesForCert(d) {
				errs = append(errs, fmt.Errorf("tls: acme: %q is not a name a certificate can be issued for", d))
			}
		}
		if a.Storage == "" {
			errs = append(errs, errors.New("tls: acme mode needs a storage directory"))
		}
		for name, p := range map[string]int{"http_port": a.HTTPPort, "tls_alpn_port": a.TLSALPNPort} {
			if p < 0 || p > 65535 {
				errs = append(errs, fmt.Errorf("tls: acme: %s %d is not a port", name, p))
			}
		}
		if a.HTTPPort != 0 && a.HTTPPort == a.TLSALPNPort {
			errs = append(errs, fmt.Errorf("tls: acme: http_port and tls_alpn_port are both %d", a.HTTPPort))
		}
	default:
		errs = append(errs, fmt.Errorf("tls: unknown mode %q (want none, files or acme)", o.Mode))
	}
	return errors.Join(errs...)
}

// TLSConfig returns a new tls.Config for http.Server.TLSConfig or
// tls.NewListener: TLS 1.2 or later, ALPN h2 and http/1.1, the current
// certificate chosen at each handshake, and client certificates verified
// when a client CA is configured.
func (m *Manager) TLSConfig() *tls.Config {
	c := m.base.Clone()
	c.GetCertificate = m.getCert
	return c
}

// Close stops reloading or renewal. Connections already accepted are not
// affected. Close is idempotent.
func (m *Manager) Close() {
	if m == nil {
		return
	}
	m.closeOnce.Do(func() {
		if m.stop != nil {
			m.stop()
			<-m.done
		}
		if m.cache != nil {
			m.cache.Stop()
		}
	})
}

// loadPool reads a PEM bundle into a certificate pool.
func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
