package tlsconf

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
)

// Backoff between attempts to obtain the first certificate: the step doubles
// from acmeRetryMin to acmeRetryMax, each wait drawn from its upper half.
const (
	acmeRetryMin = 2 * time.Second
	acmeRetryMax = 2 * time.Minute
)

// startACME sets up certmagic with a cache and config of its own (never the
// package defaults, which other code in the process could share) and holds
// a certificate before it returns.
//
// Why ManageSync and not ManageAsync: with ManageAsync the listener would
// accept handshakes before any certificate exists and fail every one of
// them. ManageSync makes New return only once a certificate is held (from
// storage on a restart, which needs no CA, or freshly obtained). It tries
// once per call, so New retries with capped exponential backoff until ctx is
// done; the caller bounds startup with ctx, and in Kubernetes the startup
// probe waits meanwhile. After that, certmagic's cache maintenance renews in
// the background; a failed renewal leaves the cached certificate in place
// (it is only replaced after a successful renewal) and is retried.
func (m *Manager) startACME(ctx context.Context, o Options) error {
	a := o.ACME
	var roots *x509.CertPool
	if len(a.CARoots) > 0 {
		roots = x509.NewCertPool()
		for _, f := range a.CARoots {
			data, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("tls: acme: ca root: %w", err)
			}
			if !roots.AppendCertsFromPEM(data) {
				return fmt.Errorf("tls: acme: ca root %s holds no PEM certificate", f)
			}
		}
	}
	if err := os.MkdirAll(a.Storage, 0o700); err != nil {
		return fmt.Errorf("tls: acme: storage: %w", err)
	}
	dir := a.Directory
	if dir == "" {
		dir = certmagic.LetsEncryptProductionCA
	}

	zl := newZapLogger(m.logger)
	var magic *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		Logger:           zl,
	})
	magic = certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: a.Storage},
		Logger:  zl,
		// A client that sends no SNI (dialling an IP) still gets the
		// certificate of the first domain.
		DefaultServerName: a.Domains[0],
	})
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:             dir,
		TestCA:         dir,
		Email:          a.Email,
		Agreed:         true,
		TrustedRoots:   roots,
		AltHTTPPort:    a.HTTPPort,
		AltTLSALPNPort: a.TLSALPNPort,
		Logger:         zl,
	})
	if a.Email == "" {
		magic.Issuers = []certmagic.Issuer{noPrompt{issuer}}
	} else {
		magic.Issuers = []certmagic.Issuer{issuer}
	}
	m.magic, m.cache = magic, cache
	m.getCert = magic.GetCertificate

	for attempt := 1; ; attempt++ {
		err := magic.ManageSync(ctx, a.Domains)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			cache.Stop()
			return fmt.Errorf("tls: acme: no certificate for %v after %d attempts: %w", a.Domains, attempt, errors.Join(err, ctx.Err()))
		}
		delay := backoff.Delay(attempt-1, acmeRetryMin, acmeRetryMax)
		m.logger.Warn("acme: obtaining certificate failed, retrying",
			"err", err, "domains", a.Domains, "attempt", attempt, "retry_in", delay.String())
		if serr := backoff.Sleep(ctx, delay); serr != nil {
			cache.Stop()
			return fmt.Errorf("tls: acme: no certificate for %v after %d attempts: %w", a.Domains, attempt, errors.Join(err, serr))
		}
	}
	m.logger.Info("acme certificate ready", "domains", a.Domains, "directory", dir)
	return nil
}

// noPrompt stops certmagic from asking for an email address on stdin (and
// printing the question on stdout) when ManageSync obtains a certificate
// with no email configured: its pre-check runs non-interactive. It is used
// only without an email, because certmagic recognises the bare
// *ACMEIssuer to send the ARI "replaces" hint on renewal.
type noPrompt struct{ *certmagic.ACMEIssuer }

var _ certmagic.PreChecker = noPrompt{}

func (n noPrompt) PreCheck(ctx context.Context, names []string, _ bool) error {
	return n.ACMEIssuer.PreCheck(ctx, names, false)
}
