package tlsconf

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// fileLoader holds the certificate read from CertFile and KeyFile. If
// reloading fails, the existing certificate stays in use.
type fileLoader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]

	// lastSum is the digest of the file contents last tried (loaded or
	// refused), so an unchanged broken pair is reported once, not on every
	// poll. Only the poll goroutine touches it after start.
	lastSum [sha256.Size]byte
}

func (m *Manager) startFiles(o Options) error {
	fl := &fileLoader{certFile: o.CertFile, keyFile: o.KeyFile}
	cert, sum, err := fl.load()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	fl.cur.Store(cert)
	fl.lastSum = sum
	m.files = fl
	m.getCert = fl.getCertificate
	m.logger.Info("tls certificate loaded", certAttrs(cert)...)
	warnValidity(m.logger, cert)

	interval := o.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fl.poll(m.logger)
			}
		}
	}()
	return nil
}

func (fl *fileLoader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return fl.cur.Load(), nil
}

// load reads and parses the pair; it fails unless the key matches the
// certificate.
func (fl *fileLoader) load() (*tls.Certificate, [sha256.Size]byte, error) {
	certPEM, keyPEM, sum, err := fl.read()
	if err != nil {
		return nil, sum, err
	}
	cert, err := parsePair(fl.certFile, fl.keyFile, certPEM, keyPEM)
	return cert, sum, err
}

func (fl *fileLoader) read() (certPEM, keyPEM []byte, sum [sha256.Size]byte, err error) {
	certPEM, err = os.ReadFile(fl.certFile)
	if err != nil {
		return nil, nil, sum, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err = os.ReadFile(fl.keyFile)
	if err != nil {
		return nil, nil, sum, fmt.Errorf("read key: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	copy(sum[:], h.Sum(nil))
	return certPEM, keyPEM, sum, nil
}

func parsePair(certFile, keyFile string, certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's messages never quote key material.
		return nil, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		return nil, errors.New("certificate has no leaf")
	}
	return &cert, nil
}

// poll reloads the pair when the files' content changed. While a rotation
// is half done (new certificate, old key) the pair does not match; the old
// certificate is kept and the next poll tries again.
func (fl *fileLoader) poll(logger *slog.Logger) {
	certPEM, keyPEM, sum, err := fl.read()
	if err != nil {
		if sum != fl.lastSum { // report a missing file once
			logger.Warn("tls certificate reload failed, keeping the current certificate", "err", err)
			fl.lastSum = sum
		}
		return
	}
	if sum == fl.lastSum {
		return
	}
	fl.lastSum = sum
	cert, err := parsePair(fl.certFile, fl.keyFile, certPEM, keyPEM)
	if err != nil {
		logger.Warn("tls certificate reload failed, keeping the current certificate", "err", err)
		return
	}
	fl.cur.Store(cert)
	logger.Info("tls certificate reloaded", certAttrs(cert)...)
	warnValidity(logger, cert)
}

func certAttrs(c *tls.Certificate) []any {
	l := c.Leaf
	return []any{
		"subject", l.Subject.String(),
		"dns_names", l.DNSNames,
		"serial", l.SerialNumber.Text(16),
		"not_after", l.NotAfter.UTC().Format(time.RFC3339),
	}
}

func warnValidity(logger *slog.Logger, c *tls.Certificate) {
	now := time.Now()
	switch {
	case now.After(c.Leaf.NotAfter):
		logger.Warn("tls certificate has expired", "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.Leaf.NotBefore):
		logger.Warn("tls certificate is not valid yet", "not_before", c.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
}
