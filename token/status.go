package token

import "time"

// Status is what /-/status shows of a grant. It holds no secret, and no
// zero time: a time not known is left out.
type Status struct {
	Connected   bool      `json:"connected"`
	Reason      Reason    `json:"reason,omitempty"` // set when not connected
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	ObtainedAt  time.Time `json:"obtained_at,omitzero"`
	Scope       string    `json:"scope,omitempty"`
	Refreshes   int64     `json:"refreshes"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Unpersisted bool      `json:"unpersisted,omitempty"`
	StoreVer    int64     `json:"store_version"`
	// Identity is the Panopto user of the held grant, when its login
	// carried an id_token.
	Identity *Identity `json:"identity,omitempty"`
}

// Reason says why a manager holds no usable access token.
type Reason string

const (
	// ReasonNeverConnected: no grant was ever stored; a login is needed.
	ReasonNeverConnected Reason = "never_connected"
	// ReasonLoggedOut: the grant was removed (logout); a login is needed.
	ReasonLoggedOut Reason = "logged_out"
	// ReasonRefreshRefused: Panopto answered invalid_grant to a refresh; a
	// login is needed.
	ReasonRefreshRefused Reason = "refresh_refused"
	// ReasonCredentialsUnavailable: the client credentials cannot be read
	// (environment, Vault); nothing can be done with Panopto until they can.
	ReasonCredentialsUnavailable Reason = "credentials_unavailable"
	// ReasonRefreshPending: a grant is held but its access token has
	// expired; the refresh is under way or retrying after errors
	// (last_error says which).
	ReasonRefreshPending Reason = "refresh_pending"
)

// droppedInvalidGrant is Record.Dropped for a grant Panopto refused.
const droppedInvalidGrant = "invalid_grant"

// Status reports the held grant.
func (m *Manager) Status() Status {
	s := m.state.Load()
	st := Status{Refreshes: s.refreshes, LastError: s.lastErr, LastErrorAt: s.lastErrAt}
	st.StoreVer = s.version
	st.Unpersisted = s.pending != nil
	st.Reason = reason(s, m.now())
	st.Connected = st.Reason == ""
	if s.grant != nil {
		st.ExpiresAt = s.grant.Expiry
		st.ObtainedAt = s.grant.ObtainedAt
		st.Scope = s.grant.Scope
		st.Identity = s.grant.Identity
	}
	return st
}

// Ready reports whether a usable access token is held, and if not, why.
func (m *Manager) Ready() (bool, Reason) {
	r := reason(m.state.Load(), m.now())
	return r == "", r
}

// reason says why s gives no usable access token at now, "" when it does.
// Credentials that cannot be read come first: until they can, neither a
// refresh nor a login can succeed.
func reason(s *state, now time.Time) Reason {
	switch {
	case usable(s.grant, now):
		return ""
	case s.credsFailed:
		return ReasonCredentialsUnavailable
	case s.grant != nil:
		return ReasonRefreshPending
	case s.dropped == droppedInvalidGrant:
		return ReasonRefreshRefused
	case s.dropped != "":
		return ReasonLoggedOut // "logout", or any other deliberate removal
	default:
		return ReasonNeverConnected
	}
}
