package vault

import (
	"context"
	"log/slog"
	"sync"
)

// Holder holds the sidecar's Vault client and the credentials read through
// it. The client is built on first use and shared by everything that needs
// Vault; Swap replaces it on reload, keeping the one in force when the new
// one cannot be built. The zero Holder is not usable: call NewHolder.
type Holder struct {
	getenv func(string) string
	logger *slog.Logger

	mu     sync.Mutex
	client *Client
	creds  *Credentials
	stop   context.CancelFunc // ends creds' polling
	polls  sync.WaitGroup     // every Credentials.Run started, Close waits for
}

// HolderStatus is the Vault part of /-/status. It holds no secret.
type HolderStatus struct {
	Client      Status             `json:"client"`
	Credentials *CredentialsStatus `json:"credentials,omitempty"`
}

// NewHolder returns an empty Holder. getenv and logger are passed to New.
func NewHolder(getenv func(string) string, logger *slog.Logger) *Holder {
	return &Holder{getenv: getenv, logger: logger}
}

// Client returns the client held, building it from cfg when there is none.
// A client already held is returned as it is, whatever cfg says: replace it
// with Swap. Its background work runs until ctx ends or Close.
func (h *Holder) Client(ctx context.Context, cfg Config) (*Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client != nil {
		return h.client, nil
	}
	c, err := New(ctx, cfg, h.getenv, h.logger)
	if err != nil {
		return nil, err
	}
	h.client = c
	return c, nil
}

// Credentials starts reading credentials with o through the client held
// (built from cfg when there is none) and stops the credentials read before.
// Polling runs until ctx ends, the next Credentials or Swap, or Close.
func (h *Holder) Credentials(ctx context.Context, cfg Config, o CredentialsOptions) (*Credentials, error) {
	c, err := h.Client(ctx, cfg)
	if err != nil {
		return nil, err
	}
	creds, stop := h.start(ctx, c, o)
	h.mu.Lock()
	prev := h.stop
	h.creds, h.stop = creds, stop
	h.mu.Unlock()
	if prev != nil {
		prev()
	}
	return creds, nil
}

// Swap builds a new client from cfg and credentials with o through it, puts
// them in place of the ones held and then closes those. When the new client
// cannot be built, the ones held stay in force and the error is returned.
func (h *Holder) Swap(ctx context.Context, cfg Config, o CredentialsOptions) (*Credentials, error) {
	c, err := New(ctx, cfg, h.getenv, h.logger)
	if err != nil {
		return nil, err
	}
	creds, stop := h.start(ctx, c, o)
	h.mu.Lock()
	oldClient, oldStop := h.client, h.stop
	h.client, h.creds, h.stop = c, creds, stop
	h.mu.Unlock()
	closeHeld(oldClient, oldStop)
	return creds, nil
}

func (h *Holder) start(ctx context.Context, c *Client, o CredentialsOptions) (*Credentials, context.CancelFunc) {
	creds := NewCredentials(c, o, h.logger)
	cctx, stop := context.WithCancel(ctx)
	h.polls.Go(func() { creds.Run(cctx) })
	return creds, stop
}

// Status describes the client held and its credentials; nil when no client
// is held.
func (h *Holder) Status() *HolderStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.client == nil {
		return nil
	}
	st := &HolderStatus{Client: h.client.Status()}
	if h.creds != nil {
		cs := h.creds.Status()
		st.Credentials = &cs
	}
	return st
}

// Up is the value of the vault-up gauge: 1 when the client held is
// authenticated and Vault answered its last call (and is not sealed), 0 when
// not, -1 when no client is held (Vault is not used).
func (h *Holder) Up() float64 {
	h.mu.Lock()
	c := h.client
	h.mu.Unlock()
	if c == nil {
		return -1
	}
	st := c.Status()
	if st.Authenticated && st.Reachable && !st.Sealed {
		return 1
	}
	return 0
}

// Close stops the credentials and the client held, waits for every
// credentials poll it started to end, and forgets them; the Holder is
// empty again, and a later Client or Credentials builds anew.
func (h *Holder) Close() {
	h.mu.Lock()
	c, stop := h.client, h.stop
	h.client, h.creds, h.stop = nil, nil, nil
	h.mu.Unlock()
	closeHeld(c, stop)
	h.polls.Wait() // the credentials' polling, of this client and those swapped out
}

func closeHeld(c *Client, stop context.CancelFunc) {
	if stop != nil {
		stop()
	}
	if c != nil {
		c.Close()
	}
}
