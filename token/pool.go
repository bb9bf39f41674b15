package token

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pool hands out token managers: the default grant's, and with accounts
// enabled one per Panopto user, created on first use and kept in a bounded
// LRU with idle eviction. An evicted account's grant stays in the store and
// is loaded again on its next request.
type Pool struct {
	base     options // what every manager shares; Key, Endpoint and Password are set per manager
	grant    GrantType
	mode     AccountsMode
	now      func() time.Time
	settings atomic.Pointer[PoolSettings]
	def      *Manager
	loaded   atomic.Bool // the default grant was loaded
	timing   Timing

	// life ends when Run does; every manager's loop runs under it, and wg
	// counts them and the eviction loop.
	life context.Context
	end  context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	stopped bool       // Run has ended: start no more goroutines
	lru     *list.List // of *poolEntry, most recent first
	byName  map[string]*list.Element
	evicted int64
}

// PoolOptions configure a Pool.
type PoolOptions struct {
	Store  Store
	Holder string // this replica's name in refresh leases
	// Credentials are read by every manager on every use: a
	// SwappableCredentials swapped on reload reaches all of them.
	Credentials CredentialSource
	HTTPClient  *http.Client // for the token endpoint
	Logger      *slog.Logger
	Now         func() time.Time // default time.Now
	// Hooks: Refresh counts every grant's refreshes; Expiry reports the
	// default grant's only.
	Hooks  Hooks
	Grant  GrantType    // how the default grant is obtained
	Mode   AccountsMode // whether and how requests name a Panopto user
	Timing Timing       // zero fields: the defaults
	PoolSettings
}

// PoolSettings are the pool's options that Update may change while it runs.
type PoolSettings struct {
	Endpoint  Endpoint
	Provider  string        // the identity provider's name in Panopto (AccountsIdP)
	MaxCached int           // accounts held in memory at most; default 1000
	IdleEvict time.Duration // an account unused this long leaves memory; 0: never
}

// PoolStatus counts accounts for /-/status; names are never listed.
type PoolStatus struct {
	Cached    int          `json:"cached"`
	Connected int          `json:"connected"`
	Evicted   int64        `json:"evicted"`
	Mode      AccountsMode `json:"mode"`
}

// ErrUnknownAccount is returned by Pool.Manager for an account that cannot
// be named: accounts are off, or the name is not a Panopto username.
var ErrUnknownAccount = errors.New("unknown account")

// NewPool returns a pool holding the default grant's manager; call Load,
// then Run.
func NewPool(o PoolOptions) *Pool {
	if o.Now == nil {
		o.Now = time.Now
	}
	life, end := context.WithCancel(context.Background())
	p := &Pool{
		life:   life,
		end:    end,
		timing: o.Timing.withDefaults(),
		base: options{
			Holder:      o.Holder,
			Store:       o.Store,
			Credentials: o.Credentials,
			HTTPClient:  o.HTTPClient,
			Logger:      o.Logger,
			Now:         o.Now,
			Hooks:       o.Hooks,
			Timing:      o.Timing,
		},
		grant:  o.Grant,
		mode:   o.Mode,
		now:    o.Now,
		lru:    list.New(),
		byName: map[string]*list.Element{},
	}
	settings := o.PoolSettings
	p.settings.Store(&settings)
	p.def = p.newManager("", &settings)
	return p
}

// Load reads the default grant from the store, so that it is held before
// the first request. Run does it too, when Load was not called.
func (p *Pool) Load(ctx context.Context) {
	if p.loaded.CompareAndSwap(false, true) {
		p.def.load(ctx)
	}
}

// Run refreshes the default grant and every account's held in memory, and
// evicts idle accounts, until ctx ends. It returns once every goroutine
// the pool started has: each manager's loop and the refreshes it runs in
// the background. Call it once; managers asked for after it has returned
// refresh on their callers' goroutines only.
func (p *Pool) Run(ctx context.Context) error {
	p.Load(ctx)
	p.mu.Lock()
	if !p.stopped {
		p.wg.Go(func() { p.def.run(p.life) })
		p.wg.Go(func() { p.evictLoop(p.life) })
	}
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.end()
	p.wg.Wait()
	return nil
}

// goLocked runs m's loop under the pool's life until ctx ends, loading the
// store first unless loaded is nil, and closes loaded once that load has
// ended. After Run, it starts nothing: m re-reads the store on use. p.mu
// is held.
func (p *Pool) goLocked(ctx context.Context, m *Manager, loaded chan struct{}) {
	if p.stopped {
		m.stop()
		if loaded != nil {
			close(loaded)
		}
		return
	}
	p.wg.Go(func() {
		if loaded != nil {
			m.load(ctx) // an eviction meanwhile cancels the load; the manager re-reads on use
			close(loaded)
		}
		m.run(ctx)
	})
}

// Default returns the default grant's manager.
func (p *Pool) Default() *Manager { return p.def }

// Manager returns the manager of account ("" is the default grant),
// starting one on first use. It implements proxy.Accounts.
//
// A new account's grant is loaded from the store outside the pool's lock,
// once however many requests ask for it meanwhile; each of them waits for
// that load as long as its own ctx allows. A slow or stalled store delays
// only the accounts being loaded.
func (p *Pool) Manager(ctx context.Context, account string) (*Manager, error) {
	if account == "" {
		return p.def, nil
	}
	if p.mode == AccountsOff || !ValidAccount(account) {
		return nil, ErrUnknownAccount
	}
	e := p.entry(account)
	select {
	case <-e.loaded:
		return e.m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("load the grant of an account: %w", ctx.Err())
	}
}

// entry returns account's pool entry, marked used now, creating it (and
// starting its store load) on first use.
func (p *Pool) entry(account string) *poolEntry {
	settings := p.settings.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if el, ok := p.byName[account]; ok {
		e := el.Value.(*poolEntry)
		e.lastUsed = now
		p.lru.MoveToFront(el)
		return e
	}
	limit := settings.MaxCached
	if limit <= 0 {
		limit = 1000
	}
	for p.lru.Len() >= limit {
		p.evictLocked(p.lru.Back())
	}
	m := p.newManager(account, settings)
	mctx, cancel := context.WithCancel(p.life)
	e := &poolEntry{name: account, m: m, cancel: cancel, lastUsed: now, loaded: make(chan struct{})}
	p.byName[account] = p.lru.PushFront(e)
	p.goLocked(mctx, m, e.loaded)
	return e
}

// Update applies new settings (config reload): every live manager gets the
// new endpoint, and later managers the rest.
func (p *Pool) Update(s PoolSettings) {
	p.settings.Store(&s)
	p.def.setEndpoint(s.Endpoint)
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*poolEntry).m.setEndpoint(s.Endpoint)
	}
}

// Status counts the accounts held in memory.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	connected := 0
	for el := p.lru.Front(); el != nil; el = el.Next() {
		if ok, _ := el.Value.(*poolEntry).m.Ready(); ok {
			connected++
		}
	}
	return PoolStatus{Cached: p.lru.Len(), Connected: connected, Evicted: p.evicted, Mode: p.mode}
}

type poolEntry struct {
	name     string
	m        *Manager
	cancel   context.CancelFunc
	lastUsed time.Time
	loaded   chan struct{} // closed once m's first store read has ended
}

// newManager builds (but does not start) the manager of account.
func (p *Pool) newManager(account string, s *PoolSettings) *Manager {
	o := p.base
	o.Key = account
	o.Endpoint = s.Endpoint
	o.Password = p.passwordFor(account, s.Provider)
	if account != "" {
		o.Hooks.Expiry = nil
	}
	return newManager(o)
}

// passwordFor returns how account logs in without a browser, or nil when it
// needs a person to log in.
func (p *Pool) passwordFor(account, provider string) passwordFunc {
	switch {
	case account == "" && p.grant == GrantPassword:
		return func(_ context.Context, c ClientCredentials) (string, Secret, error) {
			if c.Username == "" || c.Password.IsZero() {
				return "", "", errors.New("no username or password for the password grant (PANOPTO_USERNAME/PANOPTO_PASSWORD or the Vault keys)")
			}
			return c.Username, c.Password, nil
		}
	case account != "" && p.mode == AccountsIdP:
		return func(_ context.Context, c ClientCredentials) (string, Secret, error) {
			if c.AppKey.IsZero() {
				return "", "", errors.New("no identity provider app key (PANOPTO_APP_KEY or the Vault key)")
			}
			user := provider + `\` + account
			return user, idpPassword(user, c.AppKey), nil
		}
	}
	return nil
}

// idpPassword is Panopto's identity-provider password:
// base64(sha256(lower(username) + "|" + lower(appKey))).
func idpPassword(username string, appKey Secret) Secret {
	sum := sha256.Sum256([]byte(strings.ToLower(username) + "|" + strings.ToLower(appKey.Reveal())))
	return Secret(base64.StdEncoding.EncodeToString(sum[:]))
}

// MaxAccountLen is the longest account name the sidecar accepts, in bytes.
const MaxAccountLen = 256

// ValidAccount bounds what a header, a login ticket or an accounts URL may
// name: a Panopto username (1-256 bytes, no spaces, controls, '/' or '\\').
func ValidAccount(a string) bool {
	if len(a) == 0 || len(a) > MaxAccountLen {
		return false
	}
	for _, r := range a {
		if r < 0x21 || r == 0x7f || r == '\\' || r == '/' {
			return false
		}
	}
	return true
}

func (p *Pool) evictLoop(ctx context.Context) {
	t := time.NewTicker(p.timing.EvictEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.evictIdle()
	}
}

// evictIdle drops the accounts unused for longer than IdleEvict.
func (p *Pool) evictIdle() {
	idle := p.settings.Load().IdleEvict
	if idle <= 0 {
		return
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for el := p.lru.Back(); el != nil; {
		prev := el.Prev()
		if now.Sub(el.Value.(*poolEntry).lastUsed) > idle {
			p.evictLocked(el)
		}
		el = prev
	}
}

func (p *Pool) evictLocked(el *list.Element) {
	e := el.Value.(*poolEntry)
	e.cancel()
	p.lru.Remove(el)
	delete(p.byName, e.name)
	p.evicted++
}
