package main

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/cmd/panopto-sidecar/internal/config"
	"github.com/doubtfire-lms/panopto-sidecar/proxy"
	"github.com/doubtfire-lms/panopto-sidecar/proxy/oauth"
)

// accountPool hands out token managers: the default grant's, and with
// accounts enabled one per Panopto user, created on first use and kept in a
// bounded LRU with idle eviction. An evicted account's grant stays in the
// store and is loaded again on its next request.
type accountPool struct {
	s   *sidecar
	def *oauth.Manager

	mu      sync.Mutex
	ctx     context.Context
	lru     *list.List // of *accountEntry, most recent first
	byName  map[string]*list.Element
	evicted int64
}

type accountEntry struct {
	name     string
	m        *oauth.Manager
	cancel   context.CancelFunc
	lastUsed time.Time
}

func newAccountPool(s *sidecar, cfg *config.Config) *accountPool {
	p := &accountPool{s: s, lru: list.New(), byName: map[string]*list.Element{}}
	p.def = p.newManager("", cfg)
	return p
}

func (p *accountPool) newManager(account string, cfg *config.Config) *oauth.Manager {
	s := p.s
	var pw oauth.PasswordFunc
	switch {
	case account == "" && cfg.OAuth.Grant == "password":
		pw = func(_ context.Context, c oauth.ClientCredentials) (string, oauth.Secret, error) {
			if c.Username == "" || c.Password.IsZero() {
				return "", "", errors.New("no username or password for the password grant (PANOPTO_USERNAME/PANOPTO_PASSWORD or the Vault keys)")
			}
			return c.Username, c.Password, nil
		}
	case account != "" && cfg.Accounts.Mode == "idp":
		provider := cfg.Accounts.Provider
		pw = func(_ context.Context, c oauth.ClientCredentials) (string, oauth.Secret, error) {
			if c.AppKey.IsZero() {
				return "", "", errors.New("no identity provider app key (PANOPTO_APP_KEY or the Vault key)")
			}
			user := provider + `\` + account
			return user, idpPassword(user, c.AppKey), nil
		}
	}
	return oauth.NewManager(oauth.Options{
		Key:         account,
		Holder:      s.holder,
		Store:       s.store,
		Credentials: credentialsProxy{s},
		Endpoint:    endpointFrom(cfg),
		HTTPClient:  s.tokenHTTP,
		Logger:      s.log.With("component", "oauth"),
		Password:    pw,
		Hooks: oauth.Hooks{
			Refresh: s.metrics.RefreshResult,
			Expiry: func(t time.Time) {
				if account == "" {
					s.metrics.TokenExpiry(t)
				}
			},
		},
	})
}

// idpPassword is Panopto's identity-provider password:
// base64(sha256(lower(username) + "|" + lower(appKey))).
func idpPassword(username string, appKey oauth.Secret) oauth.Secret {
	sum := sha256.Sum256([]byte(strings.ToLower(username) + "|" + strings.ToLower(appKey.Reveal())))
	return oauth.Secret(base64.StdEncoding.EncodeToString(sum[:]))
}

// credentialsProxy always reads the sidecar's current credential source, so
// a reload that swaps it reaches every manager.
type credentialsProxy struct{ s *sidecar }

func (c credentialsProxy) Credentials(ctx context.Context) (oauth.ClientCredentials, error) {
	return c.s.creds.Load().src.Credentials(ctx)
}

func (c credentialsProxy) Reread(ctx context.Context) error {
	if rr, ok := c.s.creds.Load().src.(oauth.Rereader); ok {
		return rr.Reread(ctx)
	}
	return errors.New("credentials: source cannot re-read")
}

func (p *accountPool) start(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	p.def.Start(ctx)
	go p.evictLoop(ctx)
}

func (p *accountPool) defaultManager() *oauth.Manager { return p.def }

var _ proxy.Accounts = (*accountPool)(nil)

// Manager implements proxy.Accounts.
func (p *accountPool) Manager(ctx context.Context, account string) (*oauth.Manager, error) {
	if account == "" {
		return p.def, nil
	}
	cfg := p.s.cfg.Load()
	if cfg.Accounts.Mode == "off" || !validAccount(account) {
		return nil, proxy.ErrUnknownAccount
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if el, ok := p.byName[account]; ok {
		e := el.Value.(*accountEntry)
		e.lastUsed = now
		p.lru.MoveToFront(el)
		return e.m, nil
	}
	max := cfg.Accounts.MaxCache
	if max <= 0 {
		max = 1000
	}
	for p.lru.Len() >= max {
		p.evictLocked(p.lru.Back())
	}
	m := p.newManager(account, cfg)
	mctx, cancel := context.WithCancel(p.ctx)
	m.Start(mctx)
	p.byName[account] = p.lru.PushFront(&accountEntry{name: account, m: m, cancel: cancel, lastUsed: now})
	return m, nil
}

// validAccount bounds what a header may name: a Panopto username.
func validAccount(a string) bool {
	if len(a) == 0 || len(a) > 256 {
		return false
	}
	for _, r := range a {
		if r < 0x21 || r == 0x7f || r == '\\' || r == '/' {
			return false
		}
	}
	return true
}

func (p *accountPool) evictLocked(el *list.Element) {
	e := el.Value.(*accountEntry)
	e.cancel()
	p.lru.Remove(el)
	delete(p.byName, e.name)
	p.evicted++
}

func (p *accountPool) evictLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		idle := p.s.cfg.Load().Accounts.IdleEvict.D()
		if idle <= 0 {
			continue
		}
		p.mu.Lock()
		for el := p.lru.Back(); el != nil; {
			prev := el.Prev()
			if time.Since(el.Value.(*accountEntry).lastUsed) > idle {
				p.evictLocked(el)
			}
			el = prev
		}
		p.mu.Unlock()
	}
}

// setEndpoint reaches every live manager after a reload.
func (p *accountPool) setEndpoint(e oauth.Endpoint) {
	p.def.SetEndpoint(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*accountEntry).m.SetEndpoint(e)
	}
}

// status counts accounts; names are never listed.
func (p *accountPool) status() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	connected := 0
	for el := p.lru.Front(); el != nil; el = el.Next() {
		if ok, _ := el.Value.(*accountEntry).m.Ready(); ok {
			connected++
		}
	}
	return map[string]any{"mode": p.s.cfg.Load().Accounts.Mode, "cached": p.lru.Len(), "connected": connected, "evicted": p.evicted}
}
