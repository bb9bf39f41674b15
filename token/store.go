package token

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Grant is what Panopto's token endpoint granted: a bearer, the refresh token
// that renews it, and when it expires.
type Grant struct {
	AccessToken  Secret    `json:"-"`
	RefreshToken Secret    `json:"-"`
	TokenType    string    `json:"token_type,omitempty"`
	Scope        string    `json:"scope,omitempty"`
	Expiry       time.Time `json:"expires_at"`
	ObtainedAt   time.Time `json:"obtained_at"`
	// Identity is the Panopto user the login's id_token named; nil when the
	// login carried no id_token (or predates identities). Refreshes keep it.
	Identity *Identity `json:"identity,omitempty"`
}

// Valid reports whether the access token can still be used at now.
func (g *Grant) Valid(now time.Time) bool {
	return g != nil && !g.AccessToken.IsZero() && now.Before(g.Expiry)
}

// Identity is the Panopto user an id_token names. It is stored with the
// grant and shown by /-/accounts; none of it is secret.
type Identity struct {
	Subject           string `json:"sub"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	Name              string `json:"name,omitempty"`
	Email             string `json:"email,omitempty"`
	UPN               string `json:"upn,omitempty"`
}

// Lease records that one replica is refreshing the grant, so others wait for
// its result instead of presenting the same refresh token.
type Lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// Record is one entry of a Store. An account's record holds the grant (nil
// once logged out or revoked), an optional refresh lease, and why the grant
// was dropped, if it was. A login ticket marker's record (under
// TicketMarkerKey) holds only Ticket. The record of another package (an
// upload watch, an idempotency key; under a key "kind/name", see
// SplitRecordKey) holds Data, which the store keeps as it is, and may hold
// a Lease.
type Record struct {
	Grant   *Grant
	Lease   *Lease
	Dropped string // reason the grant was dropped ("invalid_grant", "logout"), if Grant is nil
	Ticket  *TicketMark
	Data    json.RawMessage // another package's record: one JSON value, opaque to the store
}

// TicketMark names the newest login ticket redeemed for an account, so that
// no replica accepts it, or an older one, again.
type TicketMark struct {
	IssuedAt time.Time `json:"iat"`
	ID       string    `json:"id"`
}

// ticketMarkerPrefix starts every marker key. Account names never contain
// '/', so no marker key is an account's key. The file store hashes keys; the
// Vault store escapes '/' ("login-ticket=2Falice" under accounts/).
const ticketMarkerPrefix = "login-ticket/"

// TicketMarkerKey is the Store key of account's redeemed-ticket marker.
func TicketMarkerKey(account string) string { return ticketMarkerPrefix + account }

// ErrConflict is returned by CompareAndSwap when the stored version is not the
// one the caller read.
var ErrConflict = errors.New("token store: version conflict")

// ErrCorrupt is wrapped by Load when the stored record cannot be decoded. A
// store never overwrites a corrupt record on its own.
var ErrCorrupt = errors.New("token store: corrupt record")

// Store keeps grants durably, keyed by account ("" is the default grant).
// Versions increase with every write; 0 means "nothing stored yet".
type Store interface {
	// Load returns the record for key and its version. A missing record is
	// (Record{}, 0, nil).
	Load(ctx context.Context, key string) (Record, int64, error)
	// CompareAndSwap writes rec if the stored version is still version, and
	// returns the new version. Otherwise it returns ErrConflict.
	CompareAndSwap(ctx context.Context, key string, version int64, rec Record) (int64, error)
}
