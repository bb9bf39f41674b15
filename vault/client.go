package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
)

// Defaults used when Config or Auth leave a field empty.
const (
	DefaultMount       = "secret"
	DefaultJWTFile     = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultApproleAuth = "approle"
	DefaultK8sAuth     = "kubernetes"
)

// Auth methods.
const (
	MethodToken      = "token"
	MethodAppRole    = "approle"
	MethodKubernetes = "kubernetes"
)

// callTimeout bounds every Vault call, retries included.
const callTimeout = 10 * time.Second

// Config says where Vault is and how to log in. Empty Address and Namespace
// fall back to $VAULT_ADDR and $VAULT_NAMESPACE.
type Config struct {
	Address       string
	Namespace     string
	CACert        string // PEM file trusted for Vault's certificate
	TLSServerName string
	Mount         string // KV v2 mount, default "secret"
	Auth          Auth
}

// Auth selects the login method and the files it reads.
type Auth struct {
	Method       string // token (default) | approle | kubernetes
	TokenFile    string // token: file holding the token; else $VAULT_TOKEN
	RoleIDFile   string // approle
	SecretIDFile string // approle
	Role         string // kubernetes: Vault role name
	JWTFile      string // kubernetes: service-account token, default DefaultJWTFile
	MountPath    string // approle/kubernetes: auth mount, default the method name
}

// Status describes the connection to Vault. It holds no secret.
type Status struct {
	Address        string    `json:"address"`
	Method         string    `json:"method"`
	Authenticated  bool      `json:"authenticated"`
	Reachable      bool      `json:"reachable"`
	Sealed         bool      `json:"sealed"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
	TokenExpiresAt time.Time `json:"token_expires_at,omitzero"`
	Logins         int64     `json:"logins"`
	Renewals       int64     `json:"renewals"`
}

// Client is a logged-in Vault client. It logs in (again) and renews its token
// in the background; calls made while Vault is unreachable or sealed fail
// promptly with an error that matches ErrUnavailable.
type Client struct {
	api    *api.Client // carries the current token
	login  *api.Client // tokenless, used only by the auth loop
	auth   authMethod
	mount  string
	method string
	logger *slog.Logger

	mu         sync.Mutex
	st         Status
	lastVerify time.Time

	tokenChanged chan struct{} // token_file has a new token
	denied       chan struct{} // a call was refused: check the token
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

// New checks cfg, builds the client and starts logging in in the background.
// It fails only for configuration errors (unknown method, unreadable files,
// bad CA file), never because Vault is unreachable or sealed. The background
// work (login, renewal, token_file polling) runs until ctx ends or Close.
// getenv supplies VAULT_ADDR, VAULT_NAMESPACE and VAULT_TOKEN.
func New(ctx context.Context, cfg Config, getenv func(string) string, logger *slog.Logger) (*Client, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Address == "" {
		cfg.Address = getenv("VAULT_ADDR")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = getenv("VAULT_NAMESPACE")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if cfg.Auth.Method == "" {
		cfg.Auth.Method = MethodToken
	}
	var errs []error
	if cfg.Address == "" {
		errs = append(errs, errors.New("vault: address is not set (vault.address or $VAULT_ADDR)"))
	}
	auth, err := newAuthMethod(cfg.Auth, getenv)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	mainAPI, err := newAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	loginAPI, err := newAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{
		api:          mainAPI,
		login:        loginAPI,
		auth:         auth,
		mount:        cfg.Mount,
		method:       cfg.Auth.Method,
		logger:       logger.With("component", "vault"),
		st:           Status{Address: cfg.Address, Method: cfg.Auth.Method},
		tokenChanged: make(chan struct{}, 1),
		denied:       make(chan struct{}, 1),
	}
	// A token known at start is usable at once, before it is looked up.
	if tok, ok := auth.(*tokenAuth); ok {
		c.api.SetToken(tok.current().Reveal())
	}
	loopCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(loopCtx)
	}()
	if tok, ok := auth.(*tokenAuth); ok && tok.file != "" {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.pollTokenFile(loopCtx)
		}()
	}
	return c, nil
}

// newAPIClient builds an api.Client from cfg alone. The library also reads
// VAULT_* from the process environment; everything it could pick up that way
// is set explicitly here, so only cfg (and getenv) decide.
func newAPIClient(cfg Config) (*api.Client, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: callTimeout,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	ac := &api.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: tr,
			// The api package follows Vault's redirects itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		Timeout:      callTimeout,
		MaxRetries:   1,
		MinRetryWait: 200 * time.Millisecond,
		MaxRetryWait: time.Second,
	}
	if cfg.CACert != "" || cfg.TLSServerName != "" {
		if err := ac.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert, TLSServerName: cfg.TLSServerName}); err != nil {
			return nil, fmt.Errorf("vault: tls: ca_cert %s: %w", cfg.CACert, err)
		}
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: client for %s: %w", cfg.Address, err)
	}
	c.ClearToken()
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	} else {
		c.ClearNamespace()
	}
	return c, nil
}

// Close stops logging in and renewing. It does not revoke the token.
func (c *Client) Close() {
	c.cancel()
	c.wg.Wait()
}

// Status returns a snapshot of the connection state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// do runs one Vault call with a bounded time, records its outcome in Status
// and returns a safe error (see Error).
func (c *Client) do(ctx context.Context, fn func(ctx context.Context, a *api.Client) error) error {
	c.checkTokenFile()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := safeError(fn(ctx, c.api))
	c.observe(err)
	if err == nil {
		// Every call made here is authenticated: the token works.
		c.mu.Lock()
		c.st.Authenticated = true
		c.mu.Unlock()
	}
	var ve *Error
	if errors.As(err, &ve) && ve.StatusCode == http.StatusForbidden {
		select {
		case c.denied <- struct{}{}:
		default:
		}
	}
	return err
}

// observe records the outcome of a call in Status.
func (c *Client) observe(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.st.Reachable, c.st.Sealed = true, false
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the caller gave up; says nothing about Vault
	}
	var ve *Error
	if errors.As(err, &ve) {
		c.st.Reachable = ve.StatusCode != 0
		c.st.Sealed = ve.sealed()
	}
	c.st.LastError = err.Error()
	c.st.LastErrorAt = time.Now()
}
