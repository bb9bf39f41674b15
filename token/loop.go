package token

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
)

// load reads the stored grant and holds it. A store that cannot be read
// is logged and shown by Status; the loop and requests read it again.
func (m *Manager) load(ctx context.Context) {
	if err := m.reload(ctx); err != nil && ctx.Err() == nil {
		m.recordErr(err)
		m.log.Error("token store: load failed; keeping nothing in memory until it can be read", "err", err)
	}
}

// run refreshes ahead of expiry until ctx ends (call load first), then
// waits for the refreshes it started in the background. Once run has
// returned, refreshes run on their callers' goroutines.
func (m *Manager) run(ctx context.Context) {
	defer m.stop()
	m.loop(ctx)
}

// loop refreshes ahead of expiry until ctx ends.
func (m *Manager) loop(ctx context.Context) {
	m.live.Add(1)
	defer m.live.Add(-1)
	if m.state.Load().grant == nil && m.password == nil {
		m.probeCredentials(ctx)
	}
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
	s := m.state.Load()
	retryAt := s.retryAt
	var at time.Time
	switch {
	case s.pending != nil:
		at = now.Add(backoff.Delay(0, m.timing.RetryBase, m.timing.RetryMax))
	case s.grant == nil && m.password != nil:
		at = now
	case s.grant == nil:
		at = now.Add(m.timing.IdlePoll)
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
	if d > m.timing.IdlePoll && s.grant == nil {
		d = m.timing.IdlePoll
	}
	return d
}

// tick refreshes if the held grant is due, a refreshed grant still waits to
// be persisted, or a password login is needed; holding nothing, it re-reads
// the store.
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
		if m.state.Load().grant == nil {
			m.probeCredentials(ctx)
		}
		return
	}
	if s.pending == nil && s.grant != nil && now.Before(m.due(s)) {
		return
	}
	err := m.refreshShared(ctx, nil)
	if err != nil && !errors.Is(err, ErrNotConnected) && !errors.Is(err, ErrInvalidGrant) && ctx.Err() == nil {
		m.log.Warn("token refresh failed; retrying with backoff", "err", err, "account", m.key,
			"token_valid", usable(m.state.Load().grant, m.now()))
	}
}

// probeCredentials reads the client credentials while no grant is held, so
// that Status tells "credentials_unavailable" from "never_connected" before
// anyone tries to log in. Reading them costs nothing once they are held.
func (m *Manager) probeCredentials(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.endpoint.Load().Timeout+10*time.Second)
	defer cancel()
	if _, err := m.credentials(ctx); err != nil {
		m.recordErr(err)
	}
}

// mayAttempt reports whether backoff allows a refresh attempt at now.
func (m *Manager) mayAttempt(now time.Time) bool {
	return !now.Before(m.state.Load().retryAt)
}

// noteResult records how a refresh attempt ended and, after a failure, when
// the next attempt may start.
func (m *Manager) noteResult(err error) {
	now := m.now()
	m.update(func(s *state) bool {
		if err == nil {
			s.failures = 0
			s.retryAt = time.Time{}
			return true
		}
		s.failures++
		wait := backoff.Delay(s.failures-1, m.timing.RetryBase, m.timing.RetryMax)
		// While the held token is still valid, never back off past the
		// point where it would expire before the next attempt: retry at
		// most a third of the remaining lifetime later (a bounded,
		// shrinking number of tries).
		if g := s.grant; g.Valid(now) {
			if left := g.Expiry.Sub(now) / 3; wait > left {
				wait = max(left, 250*time.Millisecond)
			}
		}
		s.retryAt = now.Add(wait)
		s.lastErr = err.Error()
		s.lastErrAt = now
		return true
	})
}

// recordErr keeps err for Status.
func (m *Manager) recordErr(err error) {
	now := m.now()
	m.update(func(s *state) bool {
		s.lastErr = err.Error()
		s.lastErrAt = now
		return true
	})
}

// due is when the held grant should be refreshed.
func (m *Manager) due(s *state) time.Time {
	return s.grant.Expiry.Add(-m.refreshBefore(s.grant) - s.jitter)
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

// pickJitter draws this grant's share of refresh-ahead jitter, so replicas
// and accounts do not all refresh at the same instant.
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
