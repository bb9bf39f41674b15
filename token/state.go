package token

import "time"

// state is everything a manager knows at one instant: the grant it holds,
// the refreshed grant the store has not taken yet, and how its refreshes
// went. It is immutable: a change builds a new state from a copy and swaps
// it in with compare-and-swap (Manager.update), so every reader (Token,
// Status, Ready, the loop) sees one consistent snapshot.
type state struct {
	held
	// gen counts changes of held; setState orders store reads by it.
	gen int64
	// pending holds a refreshed grant the store has not taken yet: the one
	// record of "not persisted". The background loop keeps trying.
	pending *held

	failures  int       // consecutive failed refresh attempts
	retryAt   time.Time // no synchronous attempt before this (backoff)
	lastErr   string
	lastErrAt time.Time
	refreshes int64
	// lastLoad: the last store re-read on behalf of a request.
	lastLoad time.Time
	// forbidAt: when a 403 last claimed a refresh (ClaimForbiddenRefresh).
	forbidAt time.Time
	// credsFailed: the last read of the client credentials failed.
	credsFailed bool
}

// held is a grant as read from or written to the store.
type held struct {
	grant   *Grant
	version int64
	jitter  time.Duration // this grant's share of refresh-ahead jitter
	// dropped says why no grant is held ("invalid_grant", "logout", ...).
	dropped string
}

// update swaps in the state f makes of a copy of the one held, retrying if
// another change came first; f returns false to leave the state as it is
// (and may then run again on a newer one, so it only edits its argument).
// It returns the state held afterwards and whether f's was swapped in.
func (m *Manager) update(f func(s *state) bool) (*state, bool) {
	for {
		cur := m.state.Load()
		next := *cur
		if !f(&next) {
			return cur, false
		}
		if m.state.CompareAndSwap(cur, &next) {
			return &next, true
		}
	}
}

// take makes h, a record read or written at h.version, the held grant.
// before is the state held when that read or write began: if the held
// grant has changed since to one at least as new (a concurrent refresh,
// login or read adopted it), h is older news and is not taken, so a slow
// store read never puts back a grant whose refresh token is already spent.
// A grant unchanged since before is replaced whatever the versions, so a
// store reset (a deleted record reads as version 0) still reaches the
// manager.
func (s *state) take(before *state, h held) bool {
	if s.gen != before.gen && s.version >= h.version {
		return false
	}
	s.held = h
	s.gen++
	return true
}

// setState takes h as the held grant (see state.take), and along with it
// applies also (if not nil) to the same new state, in one change. It
// reports whether h was taken; also applies either way.
func (m *Manager) setState(before *state, h held, also func(s *state)) bool {
	var took bool
	m.update(func(s *state) bool {
		took = s.take(before, h)
		if also != nil {
			also(s)
		}
		return took || also != nil
	})
	if took {
		m.grantChanged(h.grant)
	}
	return took
}

// grantChanged reports the held grant's expiry and wakes the loop.
func (m *Manager) grantChanged(g *Grant) {
	if m.hooks.Expiry != nil {
		if g != nil {
			m.hooks.Expiry(g.Expiry)
		} else {
			m.hooks.Expiry(time.Time{})
		}
	}
	m.wake()
}
