package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/tlsconf"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/proxy"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// sidecar is one running instance: the config in force (its reloader) and
// everything built from it.
type sidecar struct {
	*reloader // the config in force: s.cfg.Load()

	getenv  func(string) string
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *proxy.Metrics
	handler *proxy.Handler
	vault   *vault.Holder

	// What the token managers share.
	store     token.Store
	creds     *token.SwappableCredentials
	tokenHTTP *http.Client
	accounts  *token.Pool
	keepalive *token.KeepAlive // nil: accounts off, or a store that cannot list
	certs     *tlsconf.Manager // nil: plain HTTP
	holder    string           // this replica's name in refresh leases
	watcher   *watch.Watcher   // follows uploads after Panopto accepted them
	tuneWatch func(*watch.Options)
	timing    token.Timing // the managers' waits (tests shorten them)
}

// serve runs the sidecar until ctx ends or a server fails, then shuts down
// along one path whatever the cause (see shutdown). It owns every goroutine
// it starts, in one errgroup, and returns only once all of them ended.
func serve(ctx context.Context, path string, getenv func(string) string, stderr io.Writer, opts serveOptions) error {
	cfg, err := config.Load(path, getenv)
	if err != nil {
		return err
	}
	lv := new(slog.LevelVar)
	lv.Set(parseLevel(cfg.Log.Level))
	lw := newLogWriter(stderr)
	defer lw.Close() // last: flushes every line written before
	log := newLogger(lw, cfg.Log.Format, lv, isTerminal(stderr))

	s := &sidecar{
		reloader: newReloader(path, getenv, cfg, log),
		getenv:   getenv,
		log:      log,
		level:    lv,
		metrics:  proxy.NewMetrics(),
		vault:    vault.NewHolder(getenv, log),
		holder:   replicaName(getenv, cfg.Listen),

		tuneWatch: opts.tuneWatch,
		timing:    opts.tokenTiming,
	}
	defer s.vault.Close() // once nothing reads through it any more

	// life is what the background loops run under. Until the servers
	// serve, it ends with ctx (a SIGTERM stops a start that waits for
	// Vault or a certificate); then only shutdown ends it, after the
	// requests in flight, which may need the loops, are done.
	life, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	detach := context.AfterFunc(ctx, stopLoops)
	defer detach()

	if err := s.build(life, cfg); err != nil {
		return err
	}
	srv, ln, err := s.listen(life, cfg)
	defer s.certs.Close()
	if err != nil {
		return err
	}
	if opts.wrapMain != nil {
		ln = opts.wrapMain(ln)
	}
	pub, err := s.listenPublic(life, cfg, srv.TLSConfig, opts.wrapPublic)
	if err != nil {
		ln.Close()
		return err
	}
	// The default grant is read before the servers answer: the first
	// requests, and the Ready check below, need it. Run (in the group below)
	// then keeps every manager's loop and waits for them.
	s.accounts.Load(life)

	// g holds every goroutine serve starts; gctx ends with ctx, or when a
	// member fails (a server that cannot serve), and starts the shutdown.
	g, gctx := errgroup.WithContext(ctx)
	reload := s.reloader.watch(s.apply)
	g.Go(func() error { reload(life); return nil })
	g.Go(func() error { return s.accounts.Run(life) })
	g.Go(func() error { return s.watcher.Run(life) })
	if s.keepalive != nil {
		g.Go(func() error { s.keepalive.Run(life); return nil })
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	g.Go(pub.serve)
	g.Go(func() error {
		<-gctx.Done()
		s.shutdown(srv, pub)
		s.certs.Close()
		stopLoops()
		return nil
	})
	detach() // from now on only the shutdown above ends life

	log.Info("listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "upstream", cfg.Upstream,
		"token_store", cfg.TokenStore.Type, "credentials", cfg.Credentials.Source, "tls", cfg.TLS.Mode,
		"version", currentVersion().Version)
	pub.announce()
	if !loopbackListen(cfg.Listen) {
		switch {
		case cfg.Inbound.SharedSecretFile != "":
			log.Info("listening beyond loopback; every request must carry the shared secret", "header", cfg.Inbound.SharedSecretHeader)
		case cfg.Inbound.ClientCAFile != "":
			log.Info("listening beyond loopback; clients must present a certificate from inbound.client_ca_file")
		case cfg.Inbound.AllowUnauthenticated:
			log.Warn("listening beyond loopback WITHOUT inbound authentication (inbound.allow_unauthenticated): anyone who can reach this address can call Panopto as the connected user", "addr", ln.Addr().String())
		}
	}
	if identityCheckOff(cfg) {
		log.Warn(identityUnchecked)
	}
	if ok, reason := s.accounts.Default().Ready(); !ok && !opts.loginItself {
		switch {
		case reason == token.ReasonCredentialsUnavailable:
			log.Warn("not connected to Panopto: the client credentials cannot be read yet; see the lines above", "reason", reason)
		case cfg.PublicListen != "":
			// public_url serves ticketed logins only: its /-/login is 403.
			log.Warn("not connected to Panopto yet: accounts connect through a login link from POST /-/connect (public_listen serves no login without one)", "reason", reason, "connect", "POST /-/connect")
		default:
			log.Warn("not connected to Panopto yet: open the login URL in a browser", "reason", reason, "login_url", cfg.LoginURL())
		}
	}
	if opts.served != nil {
		opts.served(s, ln.Addr(), pub.addr())
	}

	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// shutdown is the one way the servers stop, whether ctx ended or a server
// failed: both stop accepting at once, requests in flight get the
// configured grace to finish, then the connections left are closed.
func (s *sidecar) shutdown(srv *http.Server, pub *publicServer) {
	grace := s.cfg.Load().ShutdownGrace.D()
	s.log.Info("shutting down: no new connections, waiting for requests in flight", "grace", grace)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { pub.shutdown(ctx) })
	if err := srv.Shutdown(ctx); err != nil {
		s.log.Warn("grace period over; closing the remaining connections", "err", err)
		srv.Close()
	}
	wg.Wait()
}

// replicaName names this replica in refresh leases. It is stable across
// restarts (a restarted sidecar knows the lease its predecessor left is
// dead) and distinct between replicas: the host (pod) name and the listen
// address, which no two live sidecars on one host share.
func replicaName(getenv func(string) string, listen string) string {
	h := getenv("HOSTNAME")
	if h == "" {
		h, _ = os.Hostname()
	}
	return h + "/" + listen
}

// build creates the store, credentials, token managers and the handler.
func (s *sidecar) build(ctx context.Context, cfg *config.Config) error {
	roots, err := upstreamRoots(cfg.UpstreamCAFile)
	if err != nil {
		return err
	}
	tr := proxy.NewTransport(proxy.TransportOptions{
		RootCAs: roots, DialTimeout: cfg.Timeouts.Dial.D(), ResponseHeaders: cfg.Timeouts.UpstreamHeaders.D(),
	})
	tokenTr := proxy.NewTransport(proxy.TransportOptions{RootCAs: roots, DialTimeout: cfg.Timeouts.Dial.D(), MaxIdlePerHost: 4})
	s.tokenHTTP = &http.Client{Transport: tokenTr, Timeout: cfg.Timeouts.TokenEndpoint.D() + 5*time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	src, err := s.credentialSource(ctx, cfg, false)
	if err != nil {
		return err
	}
	s.creds = token.NewSwappableCredentials(src)
	if s.store, err = s.tokenStore(ctx, cfg); err != nil {
		return err
	}
	po, err := s.poolOptions(cfg)
	if err != nil {
		return err
	}
	s.accounts = token.NewPool(po)
	if s.watcher, err = s.newWatcher(cfg, tr, s.tuneWatch); err != nil {
		return err
	}
	s.handler = proxy.New(proxy.Deps{
		Accounts:     s.accounts,
		Credentials:  s.creds,
		Flow:         login.NewLoginFlow(10*time.Minute, nil),
		Transport:    tr,
		Logger:       s.log.With("component", "proxy"),
		Metrics:      s.metrics,
		Status:       s.statusExtras,
		Revoke:       s.revoke,
		Connect:      proxy.ConnectDeps{Store: s.store, HTTPClient: s.tokenHTTP},
		Disconnected: s.disconnected(),
		Watcher:      s.watcher,
	}, s.proxyOptions(cfg))
	s.keepalive = s.keepAlive(cfg)
	s.reloader.register(s.metrics.Registry)
	s.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "panopto_sidecar_vault_up",
		Help: "1 when the Vault client is authenticated and Vault answered its last call, 0 when not, -1 when Vault is not used.",
	}, s.vault.Up))
	s.metrics.Registry.MustRegister(buildInfoGauge(currentVersion()))
	return nil
}

func upstreamRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("upstream_ca_file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream_ca_file: %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// loginURLForMessages is the login URL that log lines offer for the default
// grant: none with public_listen, where public_url serves only ticketed
// logins and its /-/login answers 403.
func loginURLForMessages(cfg *config.Config) string {
	if cfg.PublicListen != "" {
		return ""
	}
	return cfg.LoginURL()
}

func endpointFrom(cfg *config.Config) token.Endpoint {
	return token.Endpoint{
		AuthURL:       cfg.OAuth.AuthorizeURL,
		TokenURL:      cfg.OAuth.TokenURL,
		RevocationURL: cfg.OAuth.RevocationURL,
		RedirectURL:   cfg.RedirectURL(),
		Scopes:        append([]string(nil), cfg.OAuth.Scopes...),
		ClientAuth:    token.ClientAuth(cfg.OAuth.ClientAuth),
		RefreshBefore: cfg.OAuth.RefreshBefore.D(),
		Timeout:       cfg.Timeouts.TokenEndpoint.D(),
		LoginURL:      loginURLForMessages(cfg),
	}
}

func (s *sidecar) proxyOptions(cfg *config.Config) proxy.Options {
	routes := make([]proxy.Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = proxy.Route{Prefix: r.Prefix, Inject: r.Inject}
	}
	o := proxy.Options{
		Upstream:            cfg.UpstreamURL(),
		PublicURL:           cfg.PublicURL,
		Routes:              routes,
		RoutesMatch:         proxy.RoutesMatch(cfg.RoutesMatch),
		Endpoint:            endpointFrom(cfg),
		AccountsMode:        accountsMode(cfg),
		AccountsHeader:      cfg.Accounts.Header,
		RewriteUploadTarget: cfg.RewriteUploadTarget,
		RetryBodyLimit:      cfg.RetryBodyLimit.Int64(),
		SharedSecretHeader:  cfg.Inbound.SharedSecretHeader,
		UploadPartSize:      cfg.Uploads.PartSize.Int64(),
		UploadConcurrency:   cfg.Uploads.Concurrency,
		UploadMemoryLimit:   cfg.Uploads.MemoryLimit.Int64(),
		UploadQueueTimeout:  cfg.Uploads.QueueTimeout.D(),
		// The callback must come from the browser that started the login
		// (a cookie set by /-/login): a login link cannot be replayed or
		// pushed into someone else's browser.
		RequireBrowserBinding: true,
		Connect:               connectOptions(cfg),
		PublicListen:          cfg.PublicListen != "",
		AllowedHosts:          allowedHosts(cfg),
	}
	// config.Load read the file and refused a blank one: the secret comes
	// with the config it belongs to, and is never empty while the file is
	// set. Should that ever break, refuse every request rather than none.
	o.SharedSecret = cfg.Secrets.SharedSecret
	if cfg.Inbound.SharedSecretFile != "" && o.SharedSecret.IsZero() {
		o.SharedSecret = token.Secret("\x00no shared secret loaded")
	}
	return o
}

// allowedHosts are the names besides loopback ones a request on listen may
// carry in Host: listen's host when it names one address (the proxy also
// takes the address each connection came in on, so 0.0.0.0 needs nothing
// here), the ACME certificate's domains and inbound.allowed_hosts.
func allowedHosts(cfg *config.Config) []string {
	hosts := slices.Clone(cfg.Inbound.AllowedHosts)
	if cfg.TLS.Mode == config.TLSACME {
		hosts = append(hosts, cfg.TLS.ACME.Domains...)
	}
	if h, _, err := net.SplitHostPort(cfg.Listen); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func (s *sidecar) revoke(ctx context.Context, g *token.Grant) error {
	creds, err := s.creds.Credentials(ctx)
	if err != nil {
		return err
	}
	ep := endpointFrom(s.cfg.Load())
	if !g.RefreshToken.IsZero() {
		return ep.Revoke(ctx, s.tokenHTTP, creds, g.RefreshToken, "refresh_token")
	}
	return ep.Revoke(ctx, s.tokenHTTP, creds, g.AccessToken, "access_token")
}

// listenTCP binds listen and public_listen; tests hand over listeners they bound.
var listenTCP = net.Listen

// listen binds the listener (with TLS when configured) and builds the server.
func (s *sidecar) listen(ctx context.Context, cfg *config.Config) (*http.Server, net.Listener, error) {
	// The certificate first: the port stays closed while ACME obtains one.
	tc, err := s.serverTLS(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	ln, err := listenTCP("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		// A refusal reaches clients that write their whole body first.
		Handler:           proxy.Linger(s.handler),
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.D(),
		IdleTimeout:       cfg.Timeouts.Idle.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if tc != nil {
		srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	} else {
		// Plain HTTP/1: refuse requests framed ambiguously (Content-Length
		// and Transfer-Encoding, folded headers, …) instead of letting the
		// server re-frame them.
		// Over TLS the server needs the *tls.Conn itself (HTTP/2, ALPN), so
		// there it re-frames as RFC 9112 allows an intermediary to.
		ln = proxy.FramingGuard(srv, ln)
	}
	return srv, ln, nil
}

// statusExtras adds the sidecar-level fields to /-/status.
func (s *sidecar) statusExtras() map[string]any {
	cfg := s.cfg.Load()
	out := map[string]any{
		"config":      s.reloader.status(),
		"token_store": map[string]any{"type": cfg.TokenStore.Type},
		"replica":     s.holder,
		"accounts":    s.accounts.Status(),
		"version":     currentVersion().Version,
		"uploads":     s.watchStatus(cfg),
	}
	cs := map[string]any{"source": cfg.Credentials.Source}
	if c, err := s.creds.Credentials(context.Background()); err == nil {
		cs["version"] = c.Version
	} else {
		cs["error"] = err.Error()
	}
	out["credentials"] = cs
	if v := s.vault.Status(); v != nil {
		out["vault"] = v
	}
	return out
}

// loopbackListen reports whether addr binds only a loopback address.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
