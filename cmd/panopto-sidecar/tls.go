package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/tlsconf"
)

// wrapTLS puts TLS on the listener when tls.mode asks for it.
func (s *sidecar) wrapTLS(ctx context.Context, cfg *config.Config, ln net.Listener, srv *http.Server) (net.Listener, error) {
	if cfg.TLS.Mode == "" || cfg.TLS.Mode == "none" {
		return ln, nil
	}
	m, err := tlsconf.New(ctx, tlsconf.Options{
		Mode:     cfg.TLS.Mode,
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
	go func() {
		<-ctx.Done()
		m.Close()
	}()
	tc := m.TLSConfig()
	srv.TLSConfig = tc
	return tls.NewListener(ln, tc), nil
}
