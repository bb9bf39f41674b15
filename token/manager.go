package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// Manager keeps one grant (the default one, or one account's) current. It
// refreshes ahead of expiry in the background, once per process (single
// flight) and once across replicas sharing a Store (a lease taken with
// compare-and-swap), and persists every rotated refresh token before the new
// access token is served. Token is lock-free on the hot path.
type Manager struct {
	key    string
	holder string
	store  Store
	creds  CredentialSource
	log    *slog.Logger
	now    func() time.Time
	calls  tokenCall
	hooks  Hooks
	timing Timing

	endpoint atomic.Pointer[Endpoint]
	// state is all the manager knows, one immutable snapshot (state.go).
	state atomic.Pointer[state]
	// password, when set, logs in without a browser (password grant).
	password passwordFunc

	kick chan struct{}

	// The shared refresh in flight, and the background goroutines
	// running refreshes (see refreshShared).
	fmu     sync.Mutex
	flight  *flight
	stopped bool // run has ended: no more background goroutines
	bg      sync.WaitGroup
	// live counts the loop and background refreshes running now.
	live atomic.Int32
}

// passwordFunc returns the username and password for a password-grant login.
type passwordFunc func(ctx context.Context, c ClientCredentials) (username string, password Secret, err error)

// Hooks let the caller count what happens (metrics). All are optional.
type Hooks struct {
	Refresh func(result string)    // "ok", "adopted", "transient", "invalid_grant", "invalid_client", "store_error"
	Expiry  func(expiry time.Time) // called whenever the held grant changes (zero time: none)
}

// options configure a Manager.
type options struct {
	Key         string // account key; "" is the default grant
	Holder      string // this replica's name in refresh leases
	Store       Store
	Credentials CredentialSource
	Endpoint    Endpoint
	HTTPClient  *http.Client // for the token endpoint
	Logger      *slog.Logger
	Now         func() time.Time
	Password    passwordFunc // non-nil: password grant
	Hooks       Hooks
	Timing      Timing // zero fields: the defaults
}

const (
	// expirySkew: a token this close to expiry is never injected.
	expirySkew = 5 * time.Second
)

// newManager returns a manager; call load to read the store, and run to
// refresh in the background.
func newManager(o options) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Holder == "" {
		o.Holder = fmt.Sprintf("replica-%08x", rand.Uint32())
	}
	m := &Manager{
		key:      o.Key,
		holder:   o.Holder,
		store:    o.Store,
		creds:    o.Credentials,
		log:      o.Logger,
		now:      o.Now,
		calls:    tokenCall{client: o.HTTPClient, now: o.Now},
		hooks:    o.Hooks,
		timing:   o.Timing.withDefaults(),
		password: o.Password,
		kick:     make(chan struct{}, 1),
	}
	ep := o.Endpoint
	m.endpoint.Store(&ep)
	m.state.Store(&state{})
	return m
}

// setEndpoint swaps the endpoint settings (config reload). New calls use it.
func (m *Manager) setEndpoint(e Endpoint) {
	m.endpoint.Store(&e)
	m.wake()
}

// Token returns a grant whose access token is valid now. It never returns an
// expired token: past expiry it refreshes (single flight, bounded by ctx)
// and otherwise returns an error wrapping ErrNotConnected.
func (m *Manager) Token(ctx context.Context) (*Grant, error) {
	s := m.state.Load()
	now := m.now()
	if usable(s.grant, now) {
		if !now.Before(m.due(s)) {
			m.wake() // the background loop is late (e.g. a suspended process): nudge it
		}
		return s.grant, nil
	}
	// Another replica may have logged in or refreshed: re-read the store
	// (cheap, and never a call to Panopto), at most every StoreRecheck,
	// even while refreshing is backing off.
	if m.shouldRecheckStore(now) {
		if err := m.reload(ctx); err != nil {
			m.log.Debug("token store: re-read failed", "err", err)
		}
		if s = m.state.Load(); usable(s.grant, m.now()) {
			return s.grant, nil
		}
	}
	if s.grant == nil && m.password == nil {
		return nil, ErrNotConnected
	}
	if !m.mayAttempt(now) {
		return nil, fmt.Errorf("%w: token refresh is backing off after errors", ErrNotConnected)
	}
	if err := m.refreshShared(ctx, nil); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	s = m.state.Load()
	if usable(s.grant, m.now()) {
		return s.grant, nil
	}
	return nil, ErrNotConnected
}

// ForceRefresh replaces the access token after the upstream refused it
// (401, or a 403 ClaimForbiddenRefresh let through); refused nil means the
// one held now. If the held token is already a
// different one, nothing is refreshed and the current grant is returned.
func (m *Manager) ForceRefresh(ctx context.Context, refused *Grant) (*Grant, error) {
	s := m.state.Load()
	if refused == nil {
		refused = s.grant // no grant named: replace the one held now
	}
	if s.grant != nil && refused != nil && s.grant.AccessToken != refused.AccessToken && usable(s.grant, m.now()) {
		return s.grant, nil
	}
	if !m.mayAttempt(m.now()) {
		return nil, fmt.Errorf("%w: token refresh is backing off after errors", ErrNotConnected)
	}
	if err := m.refreshShared(ctx, refused); err != nil {
		return nil, err
	}
	s = m.state.Load()
	if !usable(s.grant, m.now()) {
		return nil, ErrNotConnected
	}
	return s.grant, nil
}

// ExchangeCode trades code (with the PKCE verifier) for a candidate grant
// and returns it with the token response's raw id_token ("" when there was
// none). Nothing is stored or served: the caller checks the identity, then
// calls Install, or drops the grant.
func (m *Manager) ExchangeCode(ctx context.Context, code, verifier string) (*Grant, Secret, error) {
	creds, err := m.credentials(ctx)
	if err != nil {
		return nil, "", err
	}
	ep := m.endpoint.Load()
	var idToken Secret
	g, err := m.calls.do(ctx, "exchange", ep, func(ctx context.Context) (*oauth2.Token, error) {
		tok, err := ep.OAuth2Config(creds).Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if tok != nil {
			if s, ok := tok.Extra("id_token").(string); ok {
				idToken = Secret(s)
			}
		}
		return tok, err
	})
	if err != nil {
		return nil, "", err
	}
	return g, idToken, nil
}

// Install stores g, a grant a person just obtained by logging in, over
// whatever the store holds, and serves it.
func (m *Manager) Install(ctx context.Context, g *Grant) error {
	if g.RefreshToken.IsZero() {
		m.log.Warn("Panopto granted no refresh token; the sidecar cannot refresh and will need a new login within the hour (add offline_access to oauth.scopes)")
	}
	// Overwrite the stored record whatever its version: a person just
	// logged in, and that grant is the one to keep.
	for range 10 {
		before := m.state.Load()
		_, ver, err := m.store.Load(ctx, m.key)
		if err != nil {
			return fmt.Errorf("read the stored grant before saving the new one: %w", err) // a corrupt record is never overwritten
		}
		nv, err := m.store.CompareAndSwap(ctx, m.key, ver, Record{Grant: g})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("save the new grant: %w", err)
		}
		m.setState(before, held{grant: g, version: nv, jitter: m.pickJitter(g)}, func(s *state) {
			s.pending = nil
			s.failures, s.retryAt = 0, time.Time{}
		})
		m.log.Info("connected to Panopto", "expires_at", g.Expiry, "account", m.key)
		return nil
	}
	return errors.New("token store: too many concurrent changes")
}

// Forget drops the grant (logout): it is revoked by the caller and removed
// from the store here.
func (m *Manager) Forget(ctx context.Context, reason string) (*Grant, error) {
	for range 10 {
		before := m.state.Load()
		rec, ver, err := m.store.Load(ctx, m.key)
		if err != nil {
			return nil, fmt.Errorf("read the stored grant before dropping it: %w", err)
		}
		nv, err := m.store.CompareAndSwap(ctx, m.key, ver, Record{Dropped: reason})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("drop the grant: %w", err)
		}
		gone := m.state.Load().grant
		if rec.Grant != nil {
			gone = rec.Grant
		}
		m.setState(before, held{version: nv, dropped: reason}, func(s *state) { s.pending = nil })
		return gone, nil
	}
	return nil, errors.New("token store: too many concurrent changes")
}

// shouldRecheckStore rate-limits store re-reads made on behalf of requests.
func (m *Manager) shouldRecheckStore(now time.Time) bool {
	_, ok := m.update(func(s *state) bool {
		if now.Sub(s.lastLoad) < m.timing.StoreRecheck {
			return false
		}
		s.lastLoad = now
		return true
	})
	return ok
}

// usable reports whether g may be injected at now: valid for at least
// expirySkew more (a tenth of its lifetime for very short-lived tokens), so
// a token never expires on its way to Panopto.
func usable(g *Grant, now time.Time) bool {
	if g == nil {
		return false
	}
	skew := expirySkew
	if life := g.Expiry.Sub(g.ObtainedAt); life > 0 && life/10 < skew {
		skew = life / 10
	}
	return g.Valid(now.Add(skew))
}

// wake makes the background loop look again now.
func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}
