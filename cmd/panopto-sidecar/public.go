package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/proxy"

	"github.com/doubtfire-lms/panopto-sidecar/login"
	"golang.org/x/net/netutil"
)

// connectOptions turns the per-student connection keys into the proxy's.
func connectOptions(cfg *config.Config) proxy.ConnectOptions {
	return proxy.ConnectOptions{
		ReturnTo:         append([]string(nil), cfg.Accounts.ReturnTo...),
		TicketTTL:        cfg.Accounts.TicketTTL.D(),
		IdentityClaim:    cfg.Accounts.IdentityClaim,
		IdentityTemplate: cfg.Accounts.IdentityTemplate,
		Issuer:           cfg.OAuth.Issuer,
	}
}

// identityUnchecked is the warning serve logs at start and check prints
// when per-student logins have no identity check.
const identityUnchecked = "accounts.identity_claim is none: a login link connects its account to whichever Panopto user " +
	"signs in on it, so a student who gets a classmate signed in to Panopto to open their link acts in Panopto as " +
	"that classmate; set identity_claim to sub, preferred_username, email or upn to check who signed in"

// identityCheckOff reports whether per-student logins are configured
// without an identity check.
func identityCheckOff(cfg *config.Config) bool {
	return cfg.Accounts.Mode == config.AccountsLogin && cfg.Accounts.IdentityClaim == login.IdentityClaimNone
}

// publicServer is the public listener (public_listen): the students' login
// pages and nothing else. A nil *publicServer is "not configured"; every
// method is then a no-op.
type publicServer struct {
	srv      *http.Server
	ln       net.Listener
	log      *slog.Logger
	maxConns int
}

// listenPublic binds public_listen when it is set. mainTLS is the main
// listener's TLS config (nil for plain HTTP): the public listener serves the
// same certificate, but never asks browsers for a client certificate. wrap,
// when not nil, wraps the listener (tests: one that fails).
func (s *sidecar) listenPublic(ctx context.Context, cfg *config.Config, mainTLS *tls.Config, wrap func(net.Listener) net.Listener) (*publicServer, error) {
	if cfg.PublicListen == "" {
		return nil, nil
	}
	raw, err := listenTCP("tcp", cfg.PublicListen)
	if err != nil {
		return nil, fmt.Errorf("public_listen %s: %w", cfg.PublicListen, err)
	}
	log := s.log.With("component", "public")
	srv := &http.Server{
		Handler:           proxy.Linger(s.handler.Public()),
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		ReadTimeout:       30 * time.Second, // a browser's GET has no body to wait for
		WriteTimeout:      60 * time.Second, // a callback exchanges the code: one token call
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if mainTLS != nil {
		tc := mainTLS.Clone()
		tc.ClientAuth, tc.ClientCAs = tls.NoClientCert, nil
		srv.TLSConfig = tc
	}
	ln := publicListener(raw, cfg.PublicMaxConns, srv)
	if wrap != nil {
		ln = wrap(ln)
	}
	return &publicServer{srv: srv, ln: ln, log: log, maxConns: cfg.PublicMaxConns}, nil
}

// publicListener wraps the bound public listener: at most maxConns
// connections are held open at once (the rest wait in the kernel's accept
// queue until one closes, as with nginx's worker_connections), then TLS when
// srv.TLSConfig is set, else the request-smuggling guard (which chains
// srv.ConnState, so set that first).
func publicListener(ln net.Listener, maxConns int, srv *http.Server) net.Listener {
	ln = netutil.LimitListener(ln, maxConns)
	if srv.TLSConfig != nil {
		return tls.NewListener(ln, srv.TLSConfig)
	}
	return proxy.FramingGuard(srv, ln)
}

// addr is the public listener's address; nil when there is none.
func (p *publicServer) addr() net.Addr {
	if p == nil {
		return nil
	}
	return p.ln.Addr()
}

// announce logs that the public listener is up.
func (p *publicServer) announce() {
	if p == nil {
		return
	}
	p.log.Info("listening for students' logins", "addr", p.ln.Addr().String(), "serves", "/-/login?ticket, /redirect, /-/healthz", "max_conns", p.maxConns)
}

// serve serves until shutdown (then it returns nil) or until serving fails.
func (p *publicServer) serve() error {
	if p == nil {
		return nil
	}
	if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve public_listen: %w", err)
	}
	return nil
}

// shutdown stops accepting and waits for requests in flight until ctx ends,
// then closes what is left.
func (p *publicServer) shutdown(ctx context.Context) {
	if p == nil {
		return
	}
	if err := p.srv.Shutdown(ctx); err != nil {
		p.log.Warn("grace period over; closing the remaining connections", "err", err)
		p.srv.Close()
	}
}
