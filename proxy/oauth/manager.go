package oauth

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

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
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

	endpoint atomic.Pointer[Endpoint]
	state    atomic.Pointer[state]
	// pending holds a refreshed grant that could not be persisted yet.
	pending atomic.Pointer[state]
	// password, when set, logs in without a browser (password grant).
	password PasswordFunc

	sf       singleflight.Group
	kick     chan struct{}
	mu       sync.Mutex // guards the fields below
	failures int        // consecutive failed refresh attempts
	retryAt  time.Time  // no synchronous attempt before this (backoff)
	lastLoad time.Time  // last store re-read on behalf of a request
	lastErr  string
	lastErrT time.Time
	refreshN int64
}

// state is an immutable snapshot of what the manager holds.
type state struct {
	grant   *Grant
	version int64
	jitter  time.Duration // this grant's share of refresh-ahead jitter
	// unpersisted is set when a refreshed grant could not be written to the
	// store; the background loop keeps trying.
	unpersisted bool
	// dropped says why no grant is held ("invalid_grant", "logout", ...).
	dropped string
}

// PasswordFunc returns the username and password for a password-grant login.
type PasswordFunc func(ctx context.Context, c ClientCredentials) (username string, password Secret, err error)

// Hooks let the caller count what happens (metrics). All are optional.
type Hooks struct {
	Refresh func(result string)    // "ok", "adopted", "transient", "invalid_grant", "invalid_client", "store_error"
	Expiry  func(expiry time.Time) // called whenever the held grant changes (zero time: none)
}

// Options configure a Manager.
type Options struct {
	Key         string // account key; "" is the default grant
	Holder      string // this replica's name in refresh leases
	Store       Store
	Credentials CredentialSource
	Endpoint    Endpoint
	HTTPClient  *http.Client // for the token endpoint
	Logger      *slog.Logger
	Now         func() time.Time
	Password    PasswordFunc // non-nil: password grant
	Hooks       Hooks
}

const (
	// expirySkew: a token this close to expiry is never injected.
	expirySkew = 5 * time.Second
	// storeRecheck: how often a manager holding no grant re-reads the store
	// on behalf of requests.
	storeRecheck = 500 * time.Millisecond
	// idlePoll: how often the background loop re-reads the store when it
	// holds no grant or is waiting on another replica.
	idlePoll    = 10 * time.Second
	maxBackoff  = time.Minute
	baseBackoff = time.Second
)

// NewManager returns a manager; call Start to load the store and begin
// refreshing.
func NewManager(o Options) *Manager {
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
		password: o.Password,
		kick:     make(chan struct{}, 1),
	}
	ep := o.Endpoint
	m.endpoint.Store(&ep)
	m.state.Store(&state{})
	return m
}

// SetEndpoint swaps the endpoint settings (config reload). New calls use it.
func (m *Manager) SetEndpoint(e Endpoint) {
	m.endpoint.Store(&e)
	m.wake()
}

// SetCredentials swaps the credential source (config reload).
func (m *Manager) SetCredentials(c CredentialSource) {
	m.mu.Lock()
	m.creds = c
	m.mu.Unlock()
}

func (m *Manager) credentials(ctx context.Context) (ClientCredentials, error) {
	m.mu.Lock()
	src := m.creds
	m.mu.Unlock()
	if src == nil {
		return ClientCredentials{}, errors.New("credentials: no source configured")
	}
	return src.Credentials(ctx)
}

func (m *Manager) wake() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Start loads the stored grant and runs the refresh loop until ctx ends.
func (m *Manager) Start(ctx context.Context) {
	if err := m.reload(ctx); err != nil {
		m.recordErr(err)
		m.log.Error("token store: load failed; keeping nothing in memory until it can be read", "err", err)
	}
	go m.loop(ctx)
}

// reload re-reads the store and adopts what it holds.
func (m *Manager) reload(ctx context.Context) error {
	rec, ver, err := m.store.Load(ctx, m.key)
	if err != nil {
		return err
	}
	m.adopt(rec, ver)
	return nil
}

// adopt takes a stored record as the held state, unless we hold something
// newer that is not persisted yet.
func (m *Manager) adopt(rec Record, ver int64) {
	cur := m.state.Load()
	if cur.version == ver && cur.grant != nil && rec.Grant != nil && cur.grant.AccessToken == rec.Grant.AccessToken {
		return
	}
	if p := m.pending.Load(); p != nil {
		if rec.Grant == nil || !rec.Grant.Expiry.After(p.grant.Expiry) {
			return // we hold something newer that is not persisted yet
		}
		m.pending.Store(nil)
	}
	m.setState(&state{grant: rec.Grant, version: ver, jitter: m.pickJitter(rec.Grant), dropped: rec.Dropped})
}

func (m *Manager) setState(s *state) {
	m.state.Store(s)
	if m.hooks.Expiry != nil {
		if s.grant != nil {
			m.hooks.Expiry(s.grant.Expiry)
		} else {
			m.hooks.Expiry(time.Time{})
		}
	}
	m.wake()
}

func (m *Manager) pickJitter(g *Grant) time.Duration {
	if g == nil {
		return 0
	}
	before := m.refreshBefore(g)
	span := before / 5
	if span > 30*time.Second {
		span = 30 * time.Second
	}
	if span <= 0 {
		return 0
	}
	return rand.N(span)
}

// refreshBefore is how long before expiry this grant is refreshed: the
// configured lead, but never more than half the token's lifetime.
func (m *Manager) refreshBefore(g *Grant) time.Duration {
	before := m.endpoint.Load().RefreshBefore
	if before <= 0 {
		before = 5 * time.Minute
	}
	if life := g.Expiry.Sub(g.ObtainedAt); life > 0 && before > life/2 {
		before = life / 2
	}
	return before
}

// due is when the held grant should be refreshed.
func (m *Manager) due(s *state) time.Time {
	return s.grant.Expiry.Add(-m.refreshBefore(s.grant) - s.jitter)
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
	// (cheap, and never a call to Panopto), at most every storeRecheck,
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
		return nil, fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	s = m.state.Load()
	if usable(s.grant, m.now()) {
		return s.grant, nil
	}
	return nil, ErrNotConnected
}

// ForceRefresh replaces the access token after the upstream refused it
// (401); refused nil means the one held now. If the held token is already a
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

func (m *Manager) shouldRecheckStore(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastLoad) < storeRecheck {
		return false
	}
	m.lastLoad = now
	return true
}

func (m *Manager) mayAttempt(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !now.Before(m.retryAt)
}

// refreshShared runs one refresh for all callers (single flight). The shared
// work runs on its own context: a caller giving up does not cancel it.
func (m *Manager) refreshShared(ctx context.Context, refused *Grant) error {
	ch := m.sf.DoChan("refresh", func() (any, error) {
		timeout := 2*m.endpoint.Load().Timeout + 10*time.Second
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		err := m.refresh(rctx, refused)
		m.noteResult(err)
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Manager) noteResult(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		m.failures = 0
		m.retryAt = time.Time{}
		return
	}
	m.failures++
	now := m.now()
	wait := backoff.Delay(m.failures-1, baseBackoff, maxBackoff)
	// While the held token is still valid, never back off past the point
	// where it would expire before the next attempt: retry at most a third
	// of the remaining lifetime later (a bounded, shrinking number of tries).
	if g := m.state.Load().grant; g.Valid(now) {
		if left := g.Expiry.Sub(now) / 3; wait > left {
			wait = max(left, 250*time.Millisecond)
		}
	}
	m.retryAt = now.Add(wait)
	m.lastErr = err.Error()
	m.lastErrT = m.now()
}

func (m *Manager) recordErr(err error) {
	m.mu.Lock()
	m.lastErr = err.Error()
	m.lastErrT = m.now()
	m.mu.Unlock()
}

func (m *Manager) count(result string) {
	if m.hooks.Refresh != nil {
		m.hooks.Refresh(result)
	}
}

// refresh is the cross-replica refresh protocol:
//  1. re-read the store; adopt a grant another replica already refreshed;
//  2. wait while another replica holds an unexpired lease;
//  3. take the lease with compare-and-swap;
//  4. call the token endpoint with the stored refresh token;
//  5. compare-and-swap the new grant (rotated refresh token) into the store;
//  6. only then serve the new access token.
func (m *Manager) refresh(ctx context.Context, refused *Grant) error {
	for attempt := 0; ; attempt++ {
		if attempt > 50 {
			return errors.New("token store: too many concurrent changes")
		}
		cur := m.state.Load()
		if p := m.pending.Load(); p != nil {
			return m.store1(ctx, p.grant, p.version, "persisted")
		}
		rec, ver, err := m.store.Load(ctx, m.key)
		if err != nil {
			m.count("store_error")
			return fmt.Errorf("token store: %w", err)
		}
		now := m.now()
		g := rec.Grant
		if g == nil {
			if m.password != nil {
				return m.passwordLogin(ctx, rec, ver)
			}
			m.adopt(rec, ver)
			return ErrNotConnected
		}
		// Nothing to do if the stored grant is not due (another replica or a
		// new login stored it, or another caller here already adopted it):
		// adopt it. Due is judged with this grant's share of jitter, so the
		// background loop, waking at exactly that point, does refresh. After
		// a refusal, any stored token other than the refused one will do.
		differs := cur.grant == nil || g.AccessToken != cur.grant.AccessToken
		notDue := usable(g, now) && now.Before(g.Expiry.Add(-m.refreshBefore(g)-cur.jitter))
		if (refused != nil && g.AccessToken != refused.AccessToken && usable(g, now)) ||
			(refused == nil && notDue) {
			if differs {
				m.adopt(rec, ver)
				if cur.grant != nil {
					m.count("adopted")
					m.log.Info("adopted a token refreshed elsewhere", "expires_at", g.Expiry, "account", m.key)
				}
			}
			return nil
		}
		if l := rec.Lease; l != nil && l.Holder != m.holder && now.Before(l.Until) {
			if err := m.waitLease(ctx, l.Until); err != nil {
				return err
			}
			continue
		}
		if g.RefreshToken.IsZero() {
			if m.password != nil {
				return m.passwordLogin(ctx, rec, ver)
			}
			m.adopt(rec, ver)
			return fmt.Errorf("%w: the grant has no refresh token (is offline_access in oauth.scopes?)", ErrNotConnected)
		}
		ep := m.endpoint.Load()
		lease := &Lease{Holder: m.holder, Until: now.Add(ep.Timeout + 10*time.Second)}
		leased, err := m.store.CompareAndSwap(ctx, m.key, ver, Record{Grant: g, Lease: lease})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			m.count("store_error")
			return fmt.Errorf("token store: take refresh lease: %w", err)
		}
		ng, err := m.callRefresh(ctx, ep, g)
		if err != nil {
			return m.refreshFailed(ctx, err, rec, leased)
		}
		if ng.RefreshToken.IsZero() {
			ng.RefreshToken = g.RefreshToken // not rotated: keep the one we have
		}
		if ng.Scope == "" {
			ng.Scope = g.Scope
		}
		return m.store1(ctx, ng, leased, "refreshed")
	}
}

func (m *Manager) callRefresh(ctx context.Context, ep *Endpoint, g *Grant) (*Grant, error) {
	creds, err := m.credentials(ctx)
	if err != nil {
		return nil, &EndpointError{Op: "refresh", Transient: true, Err: err}
	}
	ng, err := m.calls.do(ctx, "refresh", ep, func(ctx context.Context) (*oauth2.Token, error) {
		return ep.oauth2Config(creds).TokenSource(ctx, &oauth2.Token{RefreshToken: g.RefreshToken.Reveal()}).Token()
	})
	if errors.Is(err, ErrInvalidClient) {
		// The client secret may have been rotated: re-read it and try once
		// more. The refresh token was refused before use, so presenting it
		// again is safe.
		if rr, ok := m.credentialSource().(Rereader); ok {
			if rerr := rr.Reread(ctx); rerr == nil {
				if creds2, cerr := m.credentials(ctx); cerr == nil && (creds2.Version != creds.Version || creds2.Secret != creds.Secret || creds2.ID != creds.ID) {
					m.log.Info("client credentials changed; retrying the refresh", "version", creds2.Version)
					return m.calls.do(ctx, "refresh", ep, func(ctx context.Context) (*oauth2.Token, error) {
						return ep.oauth2Config(creds2).TokenSource(ctx, &oauth2.Token{RefreshToken: g.RefreshToken.Reveal()}).Token()
					})
				}
			}
		}
	}
	return ng, err
}

func (m *Manager) credentialSource() CredentialSource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.creds
}

// refreshFailed handles a failed token call made under our lease.
func (m *Manager) refreshFailed(ctx context.Context, err error, rec Record, leased int64) error {
	switch {
	case errors.Is(err, ErrInvalidGrant):
		m.count("invalid_grant")
		if m.password != nil {
			m.log.Warn("refresh token refused; logging in again with the password grant")
			return m.passwordLogin(ctx, Record{Grant: rec.Grant, Lease: &Lease{Holder: m.holder}}, leased)
		}
		ver, werr := m.store.CompareAndSwap(ctx, m.key, leased, Record{Dropped: "invalid_grant"})
		if werr != nil {
			m.log.Warn("token store: could not record the dead grant", "err", werr)
			ver = leased
		}
		m.setState(&state{version: ver, dropped: "invalid_grant"})
		m.log.Error("Panopto refused the refresh token: login required", "login_url", m.endpoint.Load().LoginURL, "account", m.key)
		return err
	case errors.Is(err, ErrInvalidClient):
		m.count("invalid_client")
	default:
		m.count("transient")
	}
	// Release the lease so another replica (or our next attempt) may try.
	if _, rerr := m.store.CompareAndSwap(ctx, m.key, leased, Record{Grant: rec.Grant}); rerr != nil {
		m.log.Debug("token store: release lease", "err", rerr)
	}
	return err
}

// store1 persists a new grant over the version we hold the lease on, then
// serves it. On a conflict (our lease expired and someone wrote meanwhile)
// the store's record wins if it holds a usable grant.
func (m *Manager) store1(ctx context.Context, g *Grant, version int64, how string) error {
	rec := Record{Grant: g}
	ver, err := m.store.CompareAndSwap(ctx, m.key, version, rec)
	if errors.Is(err, ErrConflict) {
		srec, sver, lerr := m.store.Load(ctx, m.key)
		if lerr == nil && srec.Grant != nil && usable(srec.Grant, m.now()) {
			m.log.Warn("token store changed while refreshing; adopting the stored grant")
			m.adopt(srec, sver)
			m.count("adopted")
			return nil
		}
		if lerr == nil {
			ver, err = m.store.CompareAndSwap(ctx, m.key, sver, rec)
		}
	}
	if err != nil {
		// The new refresh token exists only in memory now. Keep it, keep
		// trying to persist it, and serve the old access token while it
		// lasts; once the old one expires the new one is served anyway
		// (logged), since the store being down must not stop OnTrack.
		m.count("store_error")
		m.log.Error("token store: could not persist the refreshed grant; retrying", "err", err)
		cur := m.state.Load()
		if cur.grant != nil && usable(cur.grant, m.now()) {
			m.pending.Store(&state{grant: g, version: version, unpersisted: true, jitter: m.pickJitter(g)})
			return fmt.Errorf("token store: persist refreshed grant: %w", err)
		}
		p := &state{grant: g, version: version, unpersisted: true, jitter: m.pickJitter(g)}
		m.pending.Store(p)
		m.log.Warn("serving a refreshed token that is not persisted yet: the old one has expired", "account", m.key)
		m.setState(p)
		return nil
	}
	m.pending.Store(nil)
	m.mu.Lock()
	m.refreshN++
	m.mu.Unlock()
	m.setState(&state{grant: g, version: ver, jitter: m.pickJitter(g)})
	m.count("ok")
	m.log.Info("token "+how, "expires_at", g.Expiry, "account", m.key)
	return nil
}

// waitLease polls the store while another replica refreshes, until its lease
// ends, it writes its result, or ctx ends.
func (m *Manager) waitLease(ctx context.Context, until time.Time) error {
	d := 200 * time.Millisecond
	if left := until.Sub(m.now()); left < d {
		d = max(left, 10*time.Millisecond)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// passwordLogin obtains a grant with the password grant (no browser) and
// stores it over version.
func (m *Manager) passwordLogin(ctx context.Context, rec Record, version int64) error {
	creds, err := m.credentials(ctx)
	if err != nil {
		return &EndpointError{Op: "password", Transient: true, Err: err}
	}
	user, pass, err := m.password(ctx, creds)
	if err != nil {
		return fmt.Errorf("password grant: %w", err)
	}
	ep := m.endpoint.Load()
	if rec.Lease == nil || rec.Lease.Holder != m.holder {
		leased, err := m.store.CompareAndSwap(ctx, m.key, version, Record{Grant: rec.Grant, Lease: &Lease{Holder: m.holder, Until: m.now().Add(ep.Timeout + 10*time.Second)}})
		if err != nil {
			if errors.Is(err, ErrConflict) {
				return m.reload(ctx)
			}
			return fmt.Errorf("token store: take login lease: %w", err)
		}
		version = leased
	}
	g, err := m.calls.do(ctx, "password", ep, func(ctx context.Context) (*oauth2.Token, error) {
		return ep.oauth2Config(creds).PasswordCredentialsToken(ctx, user, pass.Reveal())
	})
	if err != nil {
		if errors.Is(err, ErrInvalidGrant) {
			m.count("invalid_grant")
			m.log.Error("Panopto refused the password grant; check the username and password", "account", m.key)
		} else {
			m.count("transient")
		}
		if _, rerr := m.store.CompareAndSwap(ctx, m.key, version, Record{Grant: rec.Grant}); rerr != nil {
			m.log.Debug("token store: release lease", "err", rerr)
		}
		return err
	}
	return m.store1(ctx, g, version, "obtained with the password grant")
}

// Exchange completes an authorization-code login: it trades code (with the
// PKCE verifier) for a grant, stores it, and serves it. A login replaces
// whatever grant was stored.
func (m *Manager) Exchange(ctx context.Context, code, verifier string) error {
	creds, err := m.credentials(ctx)
	if err != nil {
		return err
	}
	ep := m.endpoint.Load()
	g, err := m.calls.do(ctx, "exchange", ep, func(ctx context.Context) (*oauth2.Token, error) {
		return ep.oauth2Config(creds).Exchange(ctx, code, oauth2.VerifierOption(verifier))
	})
	if err != nil {
		return err
	}
	if g.RefreshToken.IsZero() {
		m.log.Warn("Panopto granted no refresh token; the sidecar cannot refresh and will need a new login within the hour (add offline_access to oauth.scopes)")
	}
	// Overwrite the stored record whatever its version: a person just
	// logged in, and that grant is the one to keep.
	for range 10 {
		_, ver, err := m.store.Load(ctx, m.key)
		if err != nil {
			return fmt.Errorf("token store: %w", err) // a corrupt record is never overwritten
		}
		nv, err := m.store.CompareAndSwap(ctx, m.key, ver, Record{Grant: g})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("token store: save the new grant: %w", err)
		}
		m.pending.Store(nil)
		m.setState(&state{grant: g, version: nv, jitter: m.pickJitter(g)})
		m.noteResult(nil)
		m.log.Info("connected to Panopto", "expires_at", g.Expiry, "account", m.key)
		return nil
	}
	return errors.New("token store: too many concurrent changes")
}

// Forget drops the grant (logout): it is revoked by the caller and removed
// from the store here.
func (m *Manager) Forget(ctx context.Context, reason string) (*Grant, error) {
	for range 10 {
		rec, ver, err := m.store.Load(ctx, m.key)
		if err != nil {
			return nil, fmt.Errorf("token store: %w", err)
		}
		nv, err := m.store.CompareAndSwap(ctx, m.key, ver, Record{Dropped: reason})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("token store: %w", err)
		}
		held := m.state.Load().grant
		if rec.Grant != nil {
			held = rec.Grant
		}
		m.pending.Store(nil)
		m.setState(&state{version: nv, dropped: reason})
		return held, nil
	}
	return nil, errors.New("token store: too many concurrent changes")
}

// loop refreshes ahead of expiry until ctx ends.
func (m *Manager) loop(ctx context.Context) {
	for {
		wait := m.nextWake()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.kick:
			t.Stop()
			continue
		case <-t.C:
		}
		m.tick(ctx)
	}
}

// nextWake is how long the loop sleeps before its next look.
func (m *Manager) nextWake() time.Duration {
	now := m.now()
	m.mu.Lock()
	retryAt := m.retryAt
	m.mu.Unlock()
	s := m.state.Load()
	var at time.Time
	switch {
	case m.pending.Load() != nil:
		at = now.Add(backoff.Delay(0, baseBackoff, maxBackoff))
	case s.grant == nil && m.password != nil:
		at = now
	case s.grant == nil:
		at = now.Add(idlePoll)
	default:
		at = m.due(s)
	}
	if at.Before(retryAt) {
		at = retryAt
	}
	d := at.Sub(now)
	if d < 0 {
		d = 0
	}
	if d > idlePoll && s.grant == nil {
		d = idlePoll
	}
	return d
}

func (m *Manager) tick(ctx context.Context) {
	now := m.now()
	if !m.mayAttempt(now) {
		return
	}
	s := m.state.Load()
	if s.grant == nil && m.password == nil {
		// Pick up a login made on another replica.
		if err := m.reload(ctx); err != nil {
			m.recordErr(err)
		}
		return
	}
	if m.pending.Load() == nil && s.grant != nil && now.Before(m.due(s)) {
		return
	}
	err := m.refreshShared(ctx, nil)
	if err != nil && !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrInvalidGrant) && ctx.Err() == nil {
		m.log.Warn("token refresh failed; retrying with backoff", "err", err, "account", m.key,
			"token_valid", usable(m.state.Load().grant, m.now()))
	}
}

// Status is what /-/status shows of a grant. It holds no secret.
type Status struct {
	Connected   bool      `json:"connected"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	ObtainedAt  time.Time `json:"obtained_at,omitzero"`
	Scope       string    `json:"scope,omitempty"`
	Refreshes   int64     `json:"refreshes"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Dropped     string    `json:"login_required_reason,omitempty"`
	Unpersisted bool      `json:"unpersisted,omitempty"`
	StoreVer    int64     `json:"store_version"`
}

// Status reports the held grant.
func (m *Manager) Status() Status {
	s := m.state.Load()
	m.mu.Lock()
	st := Status{Refreshes: m.refreshN, LastError: m.lastErr, LastErrorAt: m.lastErrT}
	m.mu.Unlock()
	st.StoreVer = s.version
	st.Dropped = s.dropped
	st.Unpersisted = m.pending.Load() != nil || s.unpersisted
	if s.grant != nil {
		st.Connected = usable(s.grant, m.now())
		st.ExpiresAt = s.grant.Expiry
		st.ObtainedAt = s.grant.ObtainedAt
		st.Scope = s.grant.Scope
	}
	return st
}

// Ready reports whether a usable access token is held, and if not, why.
func (m *Manager) Ready() (bool, string) {
	s := m.state.Load()
	switch {
	case usable(s.grant, m.now()):
		return true, ""
	case s.grant != nil:
		return false, "access token expired; refresh pending"
	case s.dropped != "":
		return false, "login required (" + s.dropped + ")"
	default:
		return false, "login required"
	}
}
