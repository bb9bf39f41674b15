package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/hashicorp/vault/api"
)

// Default secret keys and poll interval for CredentialsOptions.
const (
	DefaultIDKey        = "client_id"
	DefaultSecretKey    = "client_secret"
	DefaultUsernameKey  = "username"
	DefaultPasswordKey  = "password"
	DefaultAppKeyKey    = "app_key"
	DefaultWebhookKey   = "webhook_secret"
	DefaultPollInterval = 30 * time.Second
)

// CredentialsOptions locate Panopto's client credentials in KV v2.
type CredentialsOptions struct {
	Path         string // KV v2 path under the client's mount, e.g. panopto/client
	IDKey        string // required key, default client_id
	SecretKey    string // required key, default client_secret
	UsernameKey  string // optional key, default username
	PasswordKey  string // optional key, default password
	AppKeyKey    string // optional key, default app_key
	PollInterval time.Duration

	// WebhookSecretKey is the optional key of the webhook signing secret
	// (default webhook_secret), handed out by WebhookSecret only.
	WebhookSecretKey string
}

// CredentialsStatus describes the held credentials. It holds no secret.
type CredentialsStatus struct {
	Path       string    `json:"path"`
	Version    string    `json:"version,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	LastReadAt time.Time `json:"last_read_at,omitzero"`
}

// Credentials hands out Panopto client credentials read from Vault KV v2.
// The held snapshot only changes when a read succeeds completely; a failed
// read keeps it and records the error.
type Credentials struct {
	c      *Client
	o      CredentialsOptions
	logger *slog.Logger

	held       atomic.Pointer[heldCredentials]
	readMu     sync.Mutex // one read at a time
	stMu       sync.Mutex
	lastErr    string
	lastLogged string
}

type heldCredentials struct {
	creds   token.ClientCredentials
	webhook token.Secret // "" when the secret has no webhook key
	version int
	readAt  time.Time
}

var (
	_ token.CredentialSource = (*Credentials)(nil)
	_ token.Rereader         = (*Credentials)(nil)
)

// NewCredentials returns a credential source for o.Path. Nothing is read
// until Start or the first Credentials call.
func NewCredentials(c *Client, o CredentialsOptions, logger *slog.Logger) *Credentials {
	o.Path = strings.Trim(o.Path, "/")
	o.IDKey = orKey(o.IDKey, DefaultIDKey)
	o.SecretKey = orKey(o.SecretKey, DefaultSecretKey)
	o.UsernameKey = orKey(o.UsernameKey, DefaultUsernameKey)
	o.PasswordKey = orKey(o.PasswordKey, DefaultPasswordKey)
	o.AppKeyKey = orKey(o.AppKeyKey, DefaultAppKeyKey)
	o.WebhookSecretKey = orKey(o.WebhookSecretKey, DefaultWebhookKey)
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Credentials{c: c, o: o, logger: logger.With("component", "vault-credentials", "path", o.Path)}
}

func orKey(k, def string) string {
	if k == "" {
		return def
	}
	return k
}

// Run reads the credentials and then checks the secret's metadata every
// PollInterval, reading it again when its current_version changes, until
// ctx ends.
func (c *Credentials) Run(ctx context.Context) {
	c.poll(ctx)
	t := time.NewTicker(c.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.poll(ctx)
		}
	}
}

// poll reads the secret if its current version differs from the held one.
func (c *Credentials) poll(ctx context.Context) {
	held := c.held.Load()
	if held != nil {
		v, err := c.currentVersion(ctx)
		switch {
		case err == nil && v == held.version:
			return
		case err != nil && !errors.Is(err, ErrDenied):
			c.warn(ctx, c.fail(err))
			return
		}
		// Changed, or the policy does not allow reading metadata: read the data.
	}
	c.warn(ctx, c.Reread(ctx))
}

// warn logs a polling failure once, not again while it stays the same.
func (c *Credentials) warn(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	c.stMu.Lock()
	repeated := c.lastLogged == err.Error()
	c.lastLogged = err.Error()
	c.stMu.Unlock()
	switch {
	case repeated:
	case c.held.Load() == nil:
		c.logger.Warn("vault credentials not read; none held yet, so no token can be obtained until they are", "err", err)
	default:
		c.logger.Warn("vault credentials not updated; keeping the last good ones", "err", err)
	}
}

// currentVersion reads current_version from the secret's KV v2 metadata.
func (c *Credentials) currentVersion(ctx context.Context) (int, error) {
	var v int
	err := c.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		md, err := a.KVv2(c.c.mount).GetMetadata(ctx, c.o.Path)
		if err != nil {
			return err
		}
		v = md.CurrentVersion
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("vault: read metadata %s/%s: %w", c.c.mount, c.o.Path, err)
	}
	return v, nil
}

// Credentials returns the held credentials, reading them first if none are
// held yet.
func (c *Credentials) Credentials(ctx context.Context) (token.ClientCredentials, error) {
	if h := c.held.Load(); h != nil {
		return h.creds, nil
	}
	if err := c.read(ctx, true); err != nil {
		if h := c.held.Load(); h != nil {
			return h.creds, nil // another read won meanwhile
		}
		return token.ClientCredentials{}, err
	}
	return c.held.Load().creds, nil
}

// Reread reads the credentials now, for example after the token endpoint
// answered invalid_client. On failure the held credentials stay.
func (c *Credentials) Reread(ctx context.Context) error {
	return c.read(ctx, false)
}

// Status reports the held version and the last error.
func (c *Credentials) Status() CredentialsStatus {
	st := CredentialsStatus{Path: c.o.Path}
	if h := c.held.Load(); h != nil {
		st.Version = strconv.Itoa(h.version)
		st.LastReadAt = h.readAt
	}
	c.stMu.Lock()
	st.LastError = c.lastErr
	c.stMu.Unlock()
	return st
}

func (c *Credentials) read(ctx context.Context, onlyIfEmpty bool) error {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if onlyIfEmpty && c.held.Load() != nil {
		return nil
	}
	var sec *api.KVSecret
	err := c.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		var err error
		sec, err = a.KVv2(c.c.mount).Get(ctx, c.o.Path)
		return err
	})
	if err != nil {
		return c.fail(fmt.Errorf("vault: read %s/%s: %w", c.c.mount, c.o.Path, err))
	}
	h, err := c.decode(sec)
	if err != nil {
		return c.fail(err)
	}
	prev := c.held.Swap(h)
	c.stMu.Lock()
	c.lastErr, c.lastLogged = "", ""
	c.stMu.Unlock()
	if prev == nil || prev.version != h.version {
		c.logger.Info("vault credentials loaded", "version", h.version)
	}
	return nil
}

func (c *Credentials) decode(sec *api.KVSecret) (*heldCredentials, error) {
	where := c.c.mount + "/" + c.o.Path
	version := 0
	if sec.VersionMetadata != nil {
		version = sec.VersionMetadata.Version
	}
	if sec.Data == nil {
		return nil, fmt.Errorf("vault: read %s: version %d is deleted", where, version)
	}
	str := func(key string, required bool) (string, error) {
		raw, ok := sec.Data[key]
		if !ok || raw == nil {
			if required {
				return "", fmt.Errorf("vault: read %s: missing key %q", where, key)
			}
			return "", nil
		}
		s, ok := raw.(string)
		if !ok {
			return "", fmt.Errorf("vault: read %s: key %q is not a string", where, key)
		}
		if required && s == "" {
			return "", fmt.Errorf("vault: read %s: key %q is empty", where, key)
		}
		return s, nil
	}
	var errs []error
	get := func(key string, required bool) string {
		s, err := str(key, required)
		if err != nil {
			errs = append(errs, err)
		}
		return s
	}
	cc := token.ClientCredentials{
		ID:       get(c.o.IDKey, true),
		Secret:   token.Secret(get(c.o.SecretKey, true)),
		Username: get(c.o.UsernameKey, false),
		Password: token.Secret(get(c.o.PasswordKey, false)),
		AppKey:   token.Secret(get(c.o.AppKeyKey, false)),
		Source:   "vault",
		Version:  strconv.Itoa(version),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The webhook secret is optional and never fails the client
	// credentials: a missing or malformed one fails WebhookSecret only.
	wh, _ := sec.Data[c.o.WebhookSecretKey].(string)
	return &heldCredentials{creds: cc, webhook: token.Secret(wh), version: version, readAt: time.Now()}, nil
}

func (c *Credentials) fail(err error) error {
	c.stMu.Lock()
	c.lastErr = err.Error()
	c.stMu.Unlock()
	return err
}

// WebhookSecret returns the webhook signing secret (the key
// WebhookSecretKey of the credentials' secret). It first checks, as the
// poll does, whether a new version of the secret was written, so a
// rotated webhook secret signs the next delivery; when Vault cannot be
// reached it returns the one held.
func (c *Credentials) WebhookSecret(ctx context.Context) (token.Secret, error) {
	c.poll(ctx)
	h := c.held.Load()
	if h == nil {
		return "", fmt.Errorf("vault: read %s/%s: no version read yet", c.c.mount, c.o.Path)
	}
	if h.webhook.IsZero() {
		return "", fmt.Errorf("vault: read %s/%s: missing key %q (the webhook signing secret)", c.c.mount, c.o.Path, c.o.WebhookSecretKey)
	}
	return h.webhook, nil
}
