package token

import (
	"net/http"
	"strings"
	"time"
)

const (
	// forbidMinAge: a bearer younger than this is never replaced after a
	// 403, and forbidEvery: a 403 replaces a grant's bearer at most this
	// often.
	forbidMinAge = time.Minute
	forbidEvery  = time.Minute
)

// ClaimForbiddenRefresh reports whether a 403 that PublicAPI gave refused
// (nil: the bearer held now) should replace it with ForceRefresh. Panopto
// answers an expired bearer there with 403, but also a permission it does
// not grant, and replacing a bearer rotates the refresh token (a store write
// and a crash window each time). So a 403 counts as a refused bearer only
// when refused is still the one held, was obtained more than forbidMinAge
// ago, and no other 403 claimed a refresh of this grant in the last
// forbidEvery; a true answer claims that slot. Otherwise the 403 stands.
func (m *Manager) ClaimForbiddenRefresh(refused *Grant) bool {
	now := m.now()
	_, ok := m.update(func(s *state) bool {
		r := refused
		if r == nil {
			r = s.grant
		}
		if s.grant == nil || r == nil || s.grant.AccessToken != r.AccessToken ||
			now.Sub(s.grant.ObtainedAt) <= forbidMinAge {
			return false
		}
		if !s.forbidAt.IsZero() && now.Sub(s.forbidAt) < forbidEvery {
			return false
		}
		s.forbidAt = now
		return true
	})
	return ok
}

// InvalidTokenChallenge reports whether h carries a Bearer challenge with
// error="invalid_token" (RFC 6750): the upstream says the bearer itself is
// refused, whatever the status. Such a 403 is no question of permission and
// is handled as a 401.
func InvalidTokenChallenge(h http.Header) bool {
	for _, v := range h.Values("WWW-Authenticate") {
		v = strings.ToLower(v)
		if strings.HasPrefix(strings.TrimSpace(v), "bearer") && strings.Contains(v, "invalid_token") {
			return true
		}
	}
	return false
}
