package login

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"io"
	"strconv"
	"strings"
	"time"
)

// A login ticket lets one browser start one login for one account. OnTrack
// gets it from POST /-/connect and hands the login_url to the student; it
// is a bearer credential until it is redeemed or expires, so it is a Secret.
//
// Form: base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))
// without padding, where payload is JSON
//
//	{"v":1,"acct":"alice","ret":"https://…","iat":<unix ns>,"exp":<unix ns>,"id":"<26 base32>"}
//
// and key = HKDF-SHA256(client secret, no salt, TicketKeyLabel), 32 bytes.
// Every replica holds the same client credentials, so a ticket minted by one
// verifies on all; rotating the client secret voids outstanding tickets.
//
// Single use across replicas: redeeming writes a marker record to the token
// Store under token.TicketMarkerKey(account), by compare-and-swap. The marker
// is a Record holding only a token.TicketMark naming the newest ticket
// redeemed for that account. A ticket is accepted
// only if it is newer than the marker, ordered by (iat, id): a ticket used
// twice, or one older than a redeemed one, is refused, and of two replicas
// redeeming the same ticket at once exactly one wins the CAS. Tickets are
// ordered by the minting replica's clock, so replicas should keep time.

// TicketKeyLabel is the HKDF info string that derives the ticket MAC key
// from the client secret.
const TicketKeyLabel = "panopto-sidecar login ticket v1"

// MaxTicketLen bounds a ticket's length; longer input is refused
// before decoding anything.
const MaxTicketLen = 4096

// maxAccountLen matches the longest account name the sidecar accepts.
const maxAccountLen = token.MaxAccountLen

// Errors a ticket is refused with. With ErrTicketExpired and ErrTicketUsed
// the ticket was authentic, and Redeem returns its claims as well,
// so the caller can send the browser back to its return_to with a reason.
// With ErrTicketInvalid the claims are empty: nothing in it can be trusted.
var (
	ErrTicketInvalid = errors.New("login ticket is malformed or not signed by this sidecar's client")
	ErrTicketExpired = errors.New("login ticket expired")
	ErrTicketUsed    = errors.New("login ticket already used, or a newer one was")
)

// TicketClaims is what a ticket says. None of it is secret.
type TicketClaims struct {
	Account  string
	ReturnTo string // "" for the sidecar's own page
	IssuedAt time.Time
	Expires  time.Time
	ID       string
}

// ticketPayload is the wire form of TicketClaims.
type ticketPayload struct {
	V    int    `json:"v"`
	Acct string `json:"acct"`
	Ret  string `json:"ret,omitempty"`
	Iat  int64  `json:"iat"`
	Exp  int64  `json:"exp"`
	ID   string `json:"id"`
}

var b64 = base64.RawURLEncoding.Strict()

// parseTicket checks a ticket's form and returns its claims, the signed
// part and the MAC, WITHOUT authenticating them: anyone can write a ticket
// that parses. Act only on what Tickets.Redeem returns. It never panics and
// refuses input longer than MaxTicketLen before decoding it.
func parseTicket(s string) (TicketClaims, string, []byte, error) {
	if len(s) > MaxTicketLen {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: longer than %d bytes", ErrTicketInvalid, MaxTicketLen)
	}
	signed, macPart, ok := strings.Cut(s, ".")
	if !ok || signed == "" || strings.Contains(macPart, ".") {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: not two dot-separated parts", ErrTicketInvalid)
	}
	mac, err := b64.DecodeString(macPart)
	if err != nil || len(mac) != sha256.Size {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: bad MAC encoding", ErrTicketInvalid)
	}
	raw, err := b64.DecodeString(signed)
	if err != nil {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: bad payload encoding", ErrTicketInvalid)
	}
	var p ticketPayload
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: bad payload", ErrTicketInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: bad payload", ErrTicketInvalid)
	}
	if err := p.check(); err != nil {
		return TicketClaims{}, "", nil, fmt.Errorf("parse login ticket: %w: %v", ErrTicketInvalid, err)
	}
	c := TicketClaims{
		Account:  p.Acct,
		ReturnTo: p.Ret,
		IssuedAt: time.Unix(0, p.Iat).UTC(),
		Expires:  time.Unix(0, p.Exp).UTC(),
		ID:       p.ID,
	}
	return c, signed, mac, nil
}

func (p ticketPayload) check() error {
	switch {
	case p.V != 1:
		return fmt.Errorf("version %d", p.V)
	case p.Acct == "" || len(p.Acct) > maxAccountLen:
		return errors.New("bad account")
	case p.Iat <= 0 || p.Exp <= p.Iat:
		return errors.New("bad times")
	case !validTicketID(p.ID):
		return errors.New("bad id")
	}
	return nil
}

// validTicketID accepts what rand.Text makes: 26 characters of base32.
func validTicketID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Tickets mints and redeems login tickets. Safe for concurrent use; any
// number of Tickets (one per replica) may share a Store.
type Tickets struct {
	store token.Store
	key   func(context.Context) ([]byte, error)
	ttl   time.Duration
	now   func() time.Time
}

// NewTickets returns Tickets whose marks live in store and whose MAC key is
// derived from what key returns (the client secret: see
// TicketKeyFromCredentials). Tickets live for ttl (10 minutes when 0); now
// is the clock (nil: time.Now).
func NewTickets(store token.Store, key func(context.Context) ([]byte, error), ttl time.Duration, now func() time.Time) *Tickets {
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &Tickets{store: store, key: key, ttl: ttl, now: now}
}

// TicketKeyFromCredentials returns a key function for NewTickets that reads
// the current client secret from src.
func TicketKeyFromCredentials(src token.CredentialSource) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		c, err := src.Credentials(ctx)
		if err != nil {
			return nil, err
		}
		if c.Secret.IsZero() {
			return nil, errors.New("credentials: client secret is empty")
		}
		return []byte(c.Secret.Reveal()), nil
	}
}

// mac returns HMAC-SHA256 of signed under the key derived from the secret.
func (t *Tickets) mac(ctx context.Context, signed string) ([]byte, error) {
	secret, err := t.key(ctx)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if len(secret) == 0 {
		return nil, errors.New("read key: empty secret")
	}
	k, err := hkdf.Key(sha256.New, secret, nil, TicketKeyLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("derive key: %w", err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(signed))
	return m.Sum(nil), nil
}

// Mint returns a ticket for one login of account, to come back to returnTo
// ("" for the sidecar's page), and when it expires. The caller checks that
// returnTo is allowed and account well-formed; Mint refuses "" and accounts
// longer than 256 bytes, and a returnTo that makes the ticket too long.
func (t *Tickets) Mint(ctx context.Context, account, returnTo string) (token.Secret, time.Time, error) {
	if account == "" || len(account) > maxAccountLen {
		return "", time.Time{}, fmt.Errorf("mint login ticket: account must be 1-%d bytes", maxAccountLen)
	}
	now := t.now()
	exp := now.Add(t.ttl)
	payload, err := json.Marshal(ticketPayload{V: 1, Acct: account, Ret: returnTo, Iat: now.UnixNano(), Exp: exp.UnixNano(), ID: rand.Text()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint login ticket: encode: %w", err)
	}
	signed := b64.EncodeToString(payload)
	mac, err := t.mac(ctx, signed)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint login ticket for %s: %w", account, err)
	}
	tk := signed + "." + b64.EncodeToString(mac)
	if len(tk) > MaxTicketLen {
		return "", time.Time{}, fmt.Errorf("mint login ticket for %s: return_to too long (%d bytes)", account, len(returnTo))
	}
	return token.Secret(tk), time.Unix(0, exp.UnixNano()).UTC(), nil
}

// verify authenticates ticket and checks its expiry. The claims are returned
// whenever the MAC is good.
func (t *Tickets) verify(ctx context.Context, ticket token.Secret) (TicketClaims, error) {
	c, signed, mac, err := parseTicket(ticket.Reveal())
	if err != nil {
		return TicketClaims{}, err
	}
	want, err := t.mac(ctx, signed)
	if err != nil {
		return TicketClaims{}, fmt.Errorf("verify login ticket: %w", err)
	}
	if !hmac.Equal(mac, want) {
		return TicketClaims{}, fmt.Errorf("verify login ticket: %w: bad MAC", ErrTicketInvalid)
	}
	if !t.now().Before(c.Expires) {
		return c, fmt.Errorf("verify login ticket for %s: %w at %s", c.Account, ErrTicketExpired, c.Expires.Format(time.RFC3339))
	}
	return c, nil
}

// casAttempts bounds Redeem's compare-and-swap retries; each conflict means
// another redemption for the account was written meanwhile.
const casAttempts = 8

// Redeem verifies ticket (authentic, not expired, and newer than the
// account's marker) and uses it up, on every replica that shares the Store: the account's marker moves to this ticket by
// compare-and-swap. Of concurrent redemptions of one ticket exactly one
// succeeds; the others get ErrTicketUsed.
func (t *Tickets) Redeem(ctx context.Context, ticket token.Secret) (TicketClaims, error) {
	c, err := t.verify(ctx, ticket)
	if err != nil {
		return c, err
	}
	key := token.TicketMarkerKey(c.Account)
	mark := token.Record{Ticket: &token.TicketMark{IssuedAt: c.IssuedAt, ID: c.ID}}
	for range casAttempts {
		rec, version, err := t.store.Load(ctx, key)
		if err != nil {
			return c, fmt.Errorf("redeem login ticket: load %s: %w", key, err)
		}
		if err := checkMarker(rec, c); err != nil {
			return c, fmt.Errorf("redeem login ticket for %s: %w", c.Account, err)
		}
		_, err = t.store.CompareAndSwap(ctx, key, version, mark)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, token.ErrConflict) {
			return c, fmt.Errorf("redeem login ticket: write %s: %w", key, err)
		}
	}
	return c, fmt.Errorf("redeem login ticket: write %s: still conflicting after %d attempts: %w", key, casAttempts, token.ErrConflict)
}

// checkMarker returns ErrTicketUsed unless c is newer than the ticket the
// marker record names. A record that is not a marker is token.ErrCorrupt:
// nothing but Redeem writes under a marker key.
func checkMarker(rec token.Record, c TicketClaims) error {
	if rec.Grant == nil && rec.Lease == nil && rec.Dropped == "" && rec.Ticket == nil {
		return nil // never redeemed (or deleted)
	}
	iat, id, err := parseMarker(rec)
	if err != nil {
		return err
	}
	n := c.IssuedAt.UnixNano()
	if n < iat || n == iat && c.ID <= id {
		return ErrTicketUsed
	}
	return nil
}

// legacyMarkerPrefix starts Dropped in markers written before markers had
// a record type of their own ("ticket:<iat unix ns>:<id>"); they are still
// honoured, so an upgrade does not make a redeemed ticket usable again.
const legacyMarkerPrefix = "ticket:"

func parseMarker(rec token.Record) (int64, string, error) {
	notMarker := fmt.Errorf("%w: not a login ticket marker", token.ErrCorrupt)
	if rec.Grant != nil || rec.Lease != nil {
		return 0, "", notMarker
	}
	if t := rec.Ticket; t != nil {
		if t.ID == "" || rec.Dropped != "" {
			return 0, "", notMarker
		}
		return t.IssuedAt.UnixNano(), t.ID, nil
	}
	rest, ok := strings.CutPrefix(rec.Dropped, legacyMarkerPrefix)
	nanos, id, ok2 := strings.Cut(rest, ":")
	iat, err := strconv.ParseInt(nanos, 10, 64)
	if !ok || !ok2 || err != nil || id == "" {
		return 0, "", notMarker
	}
	return iat, id, nil
}
