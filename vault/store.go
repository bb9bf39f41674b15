package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/hashicorp/vault/api"
)

// Store keeps token records in Vault KV v2 and writes them with
// check-and-set, so replicas sharing it never overwrite each other's grant.
type Store struct {
	c    *Client
	path string
}

var _ token.Store = (*Store)(nil)

// NewStore returns a store rooted at path under the client's KV v2 mount.
// The default grant (key "") is at path; account k is at
// path + "/accounts/" + EscapeKey(k); a record of another kind, "kind/name"
// (token.SplitRecordKey), at path + "/records/" + kind + "/" +
// EscapeKey(name).
func NewStore(c *Client, path string) *Store {
	return &Store{c: c, path: strings.Trim(path, "/")}
}

// EscapeKey turns an account key into one KV path segment. ASCII letters,
// digits, '-' and '_' are kept; every other byte (including '/', '.', '@'
// and '=' itself) becomes '=' and two upper-case hex digits, so
// "jo.bloggs@example.edu" is "jo=2Ebloggs=40example=2Eedu". The mapping is
// one-to-one and never yields "", "." or "..".
func EscapeKey(k string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&0xF])
	}
	return b.String()
}

func (s *Store) keyPath(key string) string {
	if key == "" {
		return s.path
	}
	if kind, name, ok := token.SplitRecordKey(key); ok {
		return s.path + "/records/" + kind + "/" + EscapeKey(name)
	}
	return s.path + "/accounts/" + EscapeKey(key)
}

// Load returns the record for key and its KV v2 version. A path never
// written, or whose metadata was deleted, is (Record{}, 0, nil). A latest
// version that is deleted or destroyed is an empty record with that version,
// so the next CompareAndSwap passes the version Vault expects.
func (s *Store) Load(ctx context.Context, key string) (token.Record, int64, error) {
	p := s.keyPath(key)
	var sec *api.KVSecret
	err := s.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		var err error
		sec, err = a.KVv2(s.c.mount).Get(ctx, p)
		if errors.Is(err, api.ErrSecretNotFound) {
			sec, err = nil, nil
		}
		return err
	})
	if err != nil {
		return token.Record{}, 0, fmt.Errorf("vault: read %s/%s: %w", s.c.mount, p, err)
	}
	if sec == nil || sec.VersionMetadata == nil {
		return token.Record{}, 0, nil
	}
	v := int64(sec.VersionMetadata.Version)
	if sec.Data == nil {
		return token.Record{}, v, nil
	}
	if tv, ok := tombstone(sec.Data, v, time.Now()); ok {
		return token.Record{}, tv, nil // being deleted, see Delete
	}
	rec, err := decodeRecord(sec.Data)
	if err != nil {
		return token.Record{}, v, fmt.Errorf("vault: read %s/%s version %d: %w", s.c.mount, p, v, err)
	}
	return rec, v, nil
}

// CompareAndSwap writes rec with options.cas = version and returns the new
// version; token.ErrConflict when Vault holds another version.
func (s *Store) CompareAndSwap(ctx context.Context, key string, version int64, rec token.Record) (int64, error) {
	p := s.keyPath(key)
	if version < 0 {
		return 0, fmt.Errorf("vault: write %s/%s: negative version %d", s.c.mount, p, version)
	}
	var sec *api.KVSecret
	err := s.c.do(ctx, func(ctx context.Context, a *api.Client) error {
		var err error
		sec, err = a.KVv2(s.c.mount).Put(ctx, p, encodeRecord(rec), api.WithCheckAndSet(int(version)))
		return err
	})
	if isCASMismatch(err) {
		return 0, fmt.Errorf("vault: write %s/%s at version %d: %w", s.c.mount, p, version, token.ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("vault: write %s/%s: %w", s.c.mount, p, err)
	}
	if sec == nil || sec.VersionMetadata == nil {
		return 0, fmt.Errorf("vault: write %s/%s: no version in the answer", s.c.mount, p)
	}
	return int64(sec.VersionMetadata.Version), nil
}

// isCASMismatch recognises KV v2's check-and-set refusal: a 400 whose
// message says the parameter did not match the current version.
func isCASMismatch(err error) bool {
	var ve *Error
	if !errors.As(err, &ve) || ve.StatusCode != http.StatusBadRequest {
		return false
	}
	return ve.contains("check-and-set parameter did not match")
}

// Wire keys of a record in KV v2 data. Every value is a string; times are
// RFC 3339 with nanoseconds, "" for the zero time.
const (
	keyAccessToken  = "access_token"
	keyRefreshToken = "refresh_token"
	keyTokenType    = "token_type"
	keyScope        = "scope"
	keyExpiresAt    = "expires_at"
	keyObtainedAt   = "obtained_at"
	keyLeaseHolder  = "lease_holder"
	keyLeaseUntil   = "lease_until"
	keyDropped      = "dropped"
	// The login's Panopto identity, written only when the grant has one;
	// records without these keys (older ones) decode with no identity.
	keyIdentitySub      = "identity_sub"
	keyIdentityUsername = "identity_preferred_username"
	keyIdentityName     = "identity_name"
	keyIdentityEmail    = "identity_email"
	keyIdentityUPN      = "identity_upn"
	// A login ticket marker's record: the newest redeemed ticket.
	keyTicketIssuedAt = "ticket_iat"
	keyTicketID       = "ticket_id"
	// Another package's record: its JSON, as a string.
	keyData = "data"
)

// encodeRecord writes the grant keys only when there is a grant, the lease
// keys only when there is a lease; "dropped" is always written.
func encodeRecord(rec token.Record) map[string]any {
	m := map[string]any{keyDropped: rec.Dropped}
	if g := rec.Grant; g != nil {
		m[keyAccessToken] = g.AccessToken.Reveal()
		m[keyRefreshToken] = g.RefreshToken.Reveal()
		m[keyTokenType] = g.TokenType
		m[keyScope] = g.Scope
		m[keyExpiresAt] = formatTime(g.Expiry)
		m[keyObtainedAt] = formatTime(g.ObtainedAt)
		if id := g.Identity; id != nil {
			m[keyIdentitySub] = id.Subject
			m[keyIdentityUsername] = id.PreferredUsername
			m[keyIdentityName] = id.Name
			m[keyIdentityEmail] = id.Email
			m[keyIdentityUPN] = id.UPN
		}
	}
	if l := rec.Lease; l != nil {
		m[keyLeaseHolder] = l.Holder
		m[keyLeaseUntil] = formatTime(l.Until)
	}
	if t := rec.Ticket; t != nil {
		m[keyTicketIssuedAt] = formatTime(t.IssuedAt)
		m[keyTicketID] = t.ID
	}
	if rec.Data != nil {
		m[keyData] = string(rec.Data)
	}
	return m
}

func decodeRecord(m map[string]any) (token.Record, error) {
	var errs []error
	str := func(key string) (string, bool) {
		raw, ok := m[key]
		if !ok {
			return "", false
		}
		s, isStr := raw.(string)
		if !isStr {
			errs = append(errs, fmt.Errorf("key %q is not a string", key))
		}
		return s, true
	}
	tm := func(key string) time.Time {
		s, _ := str(key)
		t, err := parseTime(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %q is not an RFC 3339 time", key))
		}
		return t
	}
	var rec token.Record
	dropped, hasDropped := str(keyDropped)
	rec.Dropped = dropped
	access, hasGrant := str(keyAccessToken)
	if hasGrant {
		refresh, _ := str(keyRefreshToken)
		tokenType, _ := str(keyTokenType)
		scope, _ := str(keyScope)
		rec.Grant = &token.Grant{
			AccessToken:  token.Secret(access),
			RefreshToken: token.Secret(refresh),
			TokenType:    tokenType,
			Scope:        scope,
			Expiry:       tm(keyExpiresAt),
			ObtainedAt:   tm(keyObtainedAt),
		}
		if sub, ok := str(keyIdentitySub); ok {
			id := &token.Identity{Subject: sub}
			id.PreferredUsername, _ = str(keyIdentityUsername)
			id.Name, _ = str(keyIdentityName)
			id.Email, _ = str(keyIdentityEmail)
			id.UPN, _ = str(keyIdentityUPN)
			rec.Grant.Identity = id
		}
	}
	holder, hasLease := str(keyLeaseHolder)
	if hasLease {
		rec.Lease = &token.Lease{Holder: holder, Until: tm(keyLeaseUntil)}
	}
	ticketID, hasTicket := str(keyTicketID)
	if hasTicket {
		rec.Ticket = &token.TicketMark{IssuedAt: tm(keyTicketIssuedAt), ID: ticketID}
	}
	data, hasData := str(keyData)
	if hasData {
		if !json.Valid([]byte(data)) {
			errs = append(errs, fmt.Errorf("key %q is not JSON", keyData))
		}
		rec.Data = json.RawMessage(data)
	}
	if !hasDropped && !hasGrant && !hasLease && !hasTicket && !hasData {
		errs = append(errs, errors.New("no record keys"))
	}
	if err := errors.Join(errs...); err != nil {
		return token.Record{}, fmt.Errorf("%w: %w", token.ErrCorrupt, err)
	}
	return rec, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}
