package token

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
	"golang.org/x/oauth2"
)

// flight is one shared refresh; err is set before done is closed.
type flight struct {
	done chan struct{}
	err  error
}

// refreshShared runs one refresh for all callers (single flight). The shared
// work runs on its own context and goroutine: a caller giving up does not
// cancel it. run waits for those goroutines; once it has returned (or
// after stop), the refresh runs on the caller's goroutine instead.
func (m *Manager) refreshShared(ctx context.Context, refused *Grant) error {
	m.fmu.Lock()
	f := m.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		m.flight = f
		timeout := 2*m.endpoint.Load().Timeout + 10*time.Second
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		run := func() {
			m.live.Add(1)
			defer m.live.Add(-1)
			defer cancel()
			err := m.refresh(rctx, refused)
			m.noteResult(err)
			m.fmu.Lock()
			m.flight = nil
			m.fmu.Unlock()
			f.err = err
			close(f.done)
		}
		if m.stopped {
			m.fmu.Unlock()
			run()
			return f.err
		}
		m.bg.Go(run)
	}
	m.fmu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop makes later refreshes run on their callers' goroutines and waits
// for the ones running in the background.
func (m *Manager) stop() {
	m.fmu.Lock()
	m.stopped = true
	m.fmu.Unlock()
	m.bg.Wait()
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
		if p := cur.pending; p != nil {
			return m.persist(ctx, cur, p.grant, p.version, "persisted")
		}
		rec, ver, err := m.store.Load(ctx, m.key)
		if err != nil {
			m.count("store_error")
			return fmt.Errorf("read the stored grant before refreshing: %w", err)
		}
		now := m.now()
		g := rec.Grant
		if g == nil {
			if m.password != nil {
				return m.passwordLogin(ctx, cur, rec, ver)
			}
			m.adopt(cur, rec, ver)
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
			if differs && m.adopt(cur, rec, ver) {
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
				return m.passwordLogin(ctx, cur, rec, ver)
			}
			m.adopt(cur, rec, ver)
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
			return fmt.Errorf("take the refresh lease: %w", err)
		}
		ng, err := m.callRefresh(ctx, ep, g)
		if err != nil {
			return m.refreshFailed(ctx, err, cur, rec, leased)
		}
		if ng.RefreshToken.IsZero() {
			ng.RefreshToken = g.RefreshToken // not rotated: keep the one we have
		}
		if ng.Scope == "" {
			ng.Scope = g.Scope
		}
		ng.Identity = g.Identity // a refresh is the same login: the same Panopto user
		return m.persist(ctx, cur, ng, leased, "refreshed")
	}
}

// callRefresh presents the refresh token, once more with re-read client
// credentials if Panopto answers invalid_client.
func (m *Manager) callRefresh(ctx context.Context, ep *Endpoint, g *Grant) (*Grant, error) {
	creds, err := m.credentials(ctx)
	if err != nil {
		return nil, &EndpointError{Op: "refresh", Transient: true, Err: err}
	}
	ng, err := m.calls.do(ctx, "refresh", ep, func(ctx context.Context) (*oauth2.Token, error) {
		return ep.OAuth2Config(creds).TokenSource(ctx, &oauth2.Token{RefreshToken: g.RefreshToken.Reveal()}).Token()
	})
	if errors.Is(err, ErrInvalidClient) {
		// The client secret may have been rotated: re-read it and try once
		// more. The refresh token was refused before use, so presenting it
		// again is safe.
		if rr, ok := m.creds.(Rereader); ok {
			if rerr := rr.Reread(ctx); rerr == nil {
				if creds2, cerr := m.credentials(ctx); cerr == nil && (creds2.Version != creds.Version || creds2.Secret != creds.Secret || creds2.ID != creds.ID) {
					m.log.Info("client credentials changed; retrying the refresh", "version", creds2.Version)
					return m.calls.do(ctx, "refresh", ep, func(ctx context.Context) (*oauth2.Token, error) {
						return ep.OAuth2Config(creds2).TokenSource(ctx, &oauth2.Token{RefreshToken: g.RefreshToken.Reveal()}).Token()
					})
				}
			}
		}
	}
	return ng, err
}

// refreshFailed handles a failed token call made under our lease; before
// is the state held when the refresh read the store.
func (m *Manager) refreshFailed(ctx context.Context, err error, before *state, rec Record, leased int64) error {
	switch {
	case errors.Is(err, ErrInvalidGrant):
		m.count("invalid_grant")
		if m.password != nil {
			m.log.Warn("refresh token refused; logging in again with the password grant", "account", m.key)
			return m.passwordLogin(ctx, before, Record{Grant: rec.Grant, Lease: &Lease{Holder: m.holder}}, leased)
		}
		ver, werr := m.store.CompareAndSwap(ctx, m.key, leased, Record{Dropped: droppedInvalidGrant})
		if werr != nil {
			m.log.Warn("token store: could not record the dead grant", "err", werr, "account", m.key)
			ver = leased
		}
		m.setState(before, held{version: ver, dropped: droppedInvalidGrant}, nil)
		m.log.Error("Panopto refused the refresh token: login required", m.connectHint(),
			"account", m.key, "reason", ReasonRefreshRefused)
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

// persist stores a new grant over the version we hold the lease on, then
// serves it. On a conflict (our lease expired and someone wrote meanwhile)
// the store's record wins if it holds a usable grant. before is the state
// held when the refresh read the store.
func (m *Manager) persist(ctx context.Context, before *state, g *Grant, version int64, how string) error {
	rec := Record{Grant: g}
	ver, err := m.store.CompareAndSwap(ctx, m.key, version, rec)
	if errors.Is(err, ErrConflict) {
		srec, sver, lerr := m.store.Load(ctx, m.key)
		if lerr == nil && srec.Grant != nil && usable(srec.Grant, m.now()) {
			m.log.Warn("token store changed while refreshing; adopting the stored grant")
			m.adopt(before, srec, sver)
			m.count("adopted")
			return nil
		}
		if lerr == nil {
			ver, err = m.store.CompareAndSwap(ctx, m.key, sver, rec)
		}
	}
	if err != nil {
		m.count("store_error")
		return m.keepUnpersisted(before, g, version, err)
	}
	m.setState(before, held{grant: g, version: ver, jitter: m.pickJitter(g)}, func(s *state) {
		s.pending = nil
		s.refreshes++
	})
	m.count("ok")
	m.log.Info("token "+how, "expires_at", g.Expiry, "account", m.key)
	return nil
}

// keepUnpersisted holds a refreshed grant the store refused: its new
// refresh token exists only in memory now. The background loop keeps trying
// to persist it. The old access token is served while it lasts (and the
// failure returned); once it has expired the new one is served anyway
// (logged), since the store being down must not stop OnTrack.
func (m *Manager) keepUnpersisted(before *state, g *Grant, version int64, err error) error {
	p := &held{grant: g, version: version, jitter: m.pickJitter(g)}
	now := m.now()
	var serve, took bool
	m.update(func(s *state) bool {
		s.pending = p
		serve = !usable(s.grant, now)
		took = serve && s.take(before, *p)
		return true
	})
	if !serve {
		return fmt.Errorf("persist the refreshed grant (kept in memory, retrying): %w", err)
	}
	if took {
		m.grantChanged(g)
	}
	m.log.Error("token store: could not persist the refreshed grant; serving it anyway, as the old one has expired, and retrying",
		"err", err, "account", m.key)
	return nil
}

// waitLease polls the store while another replica refreshes, until its lease
// ends, it writes its result, or ctx ends.
func (m *Manager) waitLease(ctx context.Context, until time.Time) error {
	d := m.timing.LeasePoll
	if left := until.Sub(m.now()); left < d {
		d = max(left, 10*time.Millisecond)
	}
	return backoff.Sleep(ctx, d)
}

// passwordLogin obtains a grant with the password grant (no browser) and
// stores it over version; before is the state held when rec was read.
func (m *Manager) passwordLogin(ctx context.Context, before *state, rec Record, version int64) error {
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
			return fmt.Errorf("take the login lease: %w", err)
		}
		version = leased
	}
	g, err := m.calls.do(ctx, "password", ep, func(ctx context.Context) (*oauth2.Token, error) {
		return ep.OAuth2Config(creds).PasswordCredentialsToken(ctx, user, pass.Reveal())
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
	return m.persist(ctx, before, g, version, "obtained with the password grant")
}

// reload re-reads the store and adopts what it holds.
func (m *Manager) reload(ctx context.Context) error {
	before := m.state.Load()
	rec, ver, err := m.store.Load(ctx, m.key)
	if err != nil {
		return err
	}
	m.adopt(before, rec, ver)
	return nil
}

// adopt takes a stored record, read at version ver while before was held,
// as the held state, unless it is older news than what is held now (see
// setState) or we hold something newer that is not persisted yet. It
// reports whether the record was taken.
func (m *Manager) adopt(before *state, rec Record, ver int64) bool {
	h := held{grant: rec.Grant, version: ver, jitter: m.pickJitter(rec.Grant), dropped: rec.Dropped}
	var took bool
	m.update(func(s *state) bool {
		took = false
		if s.version == ver && s.grant != nil && rec.Grant != nil && s.grant.AccessToken == rec.Grant.AccessToken {
			return false
		}
		if p := s.pending; p != nil {
			if rec.Grant == nil || !rec.Grant.Expiry.After(p.grant.Expiry) {
				return false // we hold something newer that is not persisted yet
			}
			s.pending = nil
		}
		took = s.take(before, h)
		return took
	})
	if took {
		m.grantChanged(rec.Grant)
	}
	return took
}

// credentials reads the current client credentials, and records for Status
// whether they could be read.
func (m *Manager) credentials(ctx context.Context) (ClientCredentials, error) {
	var c ClientCredentials
	err := errors.New("credentials: no source configured")
	if m.creds != nil {
		c, err = m.creds.Credentials(ctx)
	}
	if err != nil && ctx.Err() != nil {
		return c, err // the caller gave up: says nothing about the source
	}
	failed := err != nil
	m.update(func(s *state) bool {
		if s.credsFailed == failed {
			return false
		}
		s.credsFailed = failed
		return true
	})
	return c, err
}

// count reports a refresh result to the Refresh hook.
func (m *Manager) count(result string) {
	if m.hooks.Refresh != nil {
		m.hooks.Refresh(result)
	}
}

// connectHint says where this grant is connected again: the login URL for
// the default grant while there is one that works, else a per-student
// account's login link from POST /-/connect.
func (m *Manager) connectHint() slog.Attr {
	if u := m.endpoint.Load().LoginURL; u != "" && m.key == "" {
		return slog.String("login_url", u)
	}
	return slog.String("connect", "POST /-/connect")
}
