package main

import (
	"context"
	"crypto/tls"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/tlsconf"
)

// serverTLS returns the listener's TLS config when tls.mode asks for it, nil
// for plain HTTP. In acme mode it returns only once a certificate is held,
// so the caller binds the port after it: until then connections are refused
// rather than accepted into a handshake nobody answers. The certificate
// manager is kept in s.certs; serve closes it when it shuts down.
func (s *sidecar) serverTLS(ctx context.Context, cfg *config.Config) (*tls.Config, error) {
	if cfg.TLS.Mode == config.TLSNone {
		return nil, nil
	}
	m, err := tlsconf.New(ctx, tlsconf.Options{
		Mode:     string(cfg.TLS.Mode),
		CertFile: cfg.TLS.CertFile,
		KeyFile:  cfg.TLS.KeyFile,
		ACME: tlsconf.ACME{
			Domains:     cfg.TLS.ACME.Domains,
			Email:       cfg.TLS.ACME.Email,
			Directory:   cfg.TLS.ACME.Directory,
			CARoots:     cfg.TLS.ACME.CARoots,
			Storage:     cfg.TLS.ACME.Storage,
			HTTPPort:    cfg.TLS.ACME.HTTPPort,
			TLSALPNPort: cfg.TLS.ACME.TLSALPNPort,
		},
		ClientCAFile: cfg.Inbound.ClientCAFile,
	}, s.log)
	if err != nil {
		return nil, err
	}
	s.certs = m
	return m.TLSConfig(), nil
}
