package login_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

const ticketReturnTo = "https://ontrack.example/panopto/done?unit=SIT123&x=<y>"

// ticketEnv is two replicas' Tickets sharing one token file and one client
// secret, on one clock.
type ticketEnv struct {
	t     *testing.T
	clk   *testsupport.Clock
	path  string
	store *token.FileStore
	a, b  *login.Tickets
}

func staticKey(secret string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(secret), nil }
}

func newTicketEnv(t *testing.T) *ticketEnv {
	t.Helper()
	clk := testsupport.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 123, time.UTC))
	path := filepath.Join(t.TempDir(), "token.json")
	e := &ticketEnv{t: t, clk: clk, path: path, store: token.NewFileStore(path)}
	e.a = login.NewTickets(e.store, staticKey("client-secret-1"), 10*time.Minute, clk.Now)
	// Replica b: its own store value on the same file, its own key reader.
	e.b = login.NewTickets(token.NewFileStore(path), login.TicketKeyFromCredentials(
		token.StaticCredentials{ID: "id", Secret: "client-secret-1"}), 10*time.Minute, clk.Now)
	return e
}

func (e *ticketEnv) mint(tk *login.Tickets, account string) token.Secret {
	e.t.Helper()
	s, _, err := tk.Mint(context.Background(), account, ticketReturnTo)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func TestTicketMintPeekRedeem(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	tk, exp, err := e.a.Mint(ctx, "alice", ticketReturnTo)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now()
	if !exp.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("expires %v, want %v", exp, now.Add(10*time.Minute))
	}
	if len(tk.Reveal()) > login.MaxTicketLen || strings.ContainsAny(tk.Reveal(), "=+/ ") {
		t.Errorf("ticket is not compact base64url: %d bytes", len(tk.Reveal()))
	}
	want := login.TicketClaims{Account: "alice", ReturnTo: ticketReturnTo, IssuedAt: now, Expires: exp}
	check := func(what string, c login.TicketClaims, err error, wantErr error) {
		t.Helper()
		if !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
			t.Fatalf("%s: error %v, want %v", what, err, wantErr)
		}
		got := c
		got.ID = ""
		if !got.IssuedAt.Equal(want.IssuedAt) || !got.Expires.Equal(want.Expires) {
			t.Fatalf("%s: times %v %v", what, got.IssuedAt, got.Expires)
		}
		got.IssuedAt, got.Expires = want.IssuedAt, want.Expires
		if got != want || len(c.ID) != 26 {
			t.Fatalf("%s: claims %+v", what, c)
		}
	}

	// Peek uses nothing up, on either replica.
	c, err := e.a.Peek(ctx, tk)
	check("peek a", c, err, nil)
	c, err = e.b.Peek(ctx, tk)
	check("peek b", c, err, nil)
	// Minted on a, redeemed on b; then used up everywhere.
	c, err = e.b.Redeem(ctx, tk)
	check("redeem b", c, err, nil)
	c, err = e.a.Redeem(ctx, tk)
	check("redeem again on a", c, err, login.ErrTicketUsed)
	c, err = e.b.Redeem(ctx, tk)
	check("redeem again on b", c, err, login.ErrTicketUsed)
	c, err = e.a.Peek(ctx, tk)
	check("peek after redeem", c, err, login.ErrTicketUsed)

	// The marker lives beside, not in, the account's grant record.
	if rec, v, err := e.store.Load(ctx, "alice"); err != nil || v != 0 || rec.Grant != nil || rec.Dropped != "" {
		t.Fatalf("account record touched: %+v v%d %v", rec, v, err)
	}
	rec, v, err := e.store.Load(ctx, token.TicketMarkerKey("alice"))
	if err != nil || v != 1 || rec.Grant != nil || rec.Lease != nil || rec.Dropped != "" ||
		rec.Ticket == nil || !rec.Ticket.IssuedAt.Equal(now) || rec.Ticket.ID != c.ID {
		t.Fatalf("marker %+v v%d %v, want a ticket mark of %v %s", rec, v, err, now, c.ID)
	}
	if token.TicketMarkerKey("alice") != "login-ticket/alice" {
		t.Errorf("marker key %q", token.TicketMarkerKey("alice"))
	}

	// Another account has its own marker.
	if _, err := e.a.Redeem(ctx, e.mint(e.a, "bob")); err != nil {
		t.Fatalf("bob: %v", err)
	}
}

func TestTicketOlderRefusedAfterNewer(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	older := e.mint(e.a, "alice")
	e.clk.Advance(time.Second)
	newer := e.mint(e.b, "alice")
	e.clk.Advance(time.Second)
	newest := e.mint(e.a, "alice")

	if _, err := e.a.Redeem(ctx, newer); err != nil {
		t.Fatalf("newer: %v", err)
	}
	for name, tk := range map[string]token.Secret{"older": older, "newer again": newer} {
		if c, err := e.b.Redeem(ctx, tk); !errors.Is(err, login.ErrTicketUsed) || c.Account != "alice" {
			t.Fatalf("%s: %+v %v", name, c, err)
		}
		if _, err := e.a.Peek(ctx, tk); !errors.Is(err, login.ErrTicketUsed) {
			t.Fatalf("peek %s: %v", name, err)
		}
	}
	if _, err := e.b.Redeem(ctx, newest); err != nil {
		t.Fatalf("newest: %v", err)
	}
}

func TestTicketSameInstantOrderedByID(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	x, y := e.mint(e.a, "alice"), e.mint(e.b, "alice") // same clock reading
	cx, _ := login.ParseTicket(x.Reveal())
	cy, _ := login.ParseTicket(y.Reveal())
	if cx.ID > cy.ID {
		x, y = y, x
	}
	if _, err := e.a.Redeem(ctx, x); err != nil {
		t.Fatalf("lower id: %v", err)
	}
	if _, err := e.a.Redeem(ctx, y); err != nil {
		t.Fatalf("higher id after lower: %v", err)
	}
	if _, err := e.a.Redeem(ctx, x); !errors.Is(err, login.ErrTicketUsed) {
		t.Fatalf("lower id after higher: %v", err)
	}
}

func TestTicketExpiry(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	tk := e.mint(e.a, "alice")
	e.clk.Advance(10*time.Minute - time.Nanosecond)
	if _, err := e.a.Peek(ctx, tk); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	e.clk.Advance(time.Nanosecond)
	for name, f := range map[string]func(context.Context, token.Secret) (login.TicketClaims, error){"peek": e.b.Peek, "redeem": e.b.Redeem} {
		c, err := f(ctx, tk)
		if !errors.Is(err, login.ErrTicketExpired) || c.Account != "alice" || c.ReturnTo != ticketReturnTo {
			t.Fatalf("%s at expiry: %+v %v", name, c, err)
		}
	}
	if _, v, _ := e.store.Load(ctx, token.TicketMarkerKey("alice")); v != 0 {
		t.Fatal("an expired ticket wrote a marker")
	}
	// Default ttl.
	d := login.NewTickets(e.store, staticKey("s"), 0, e.clk.Now)
	if _, exp, err := d.Mint(ctx, "alice", ""); err != nil || !exp.Equal(e.clk.Now().Add(10*time.Minute)) {
		t.Fatalf("default ttl: %v %v", exp, err)
	}
}

func TestTicketTamperedOrForeign(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	tk := e.mint(e.a, "alice").Reveal()
	bob := e.mint(e.a, "bob").Reveal()
	payload, mac, _ := strings.Cut(tk, ".")
	bobPayload, _, _ := strings.Cut(bob, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	forged := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"alice"`), []byte(`"mallory"`), 1))
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other := login.NewTickets(e.store, staticKey("client-secret-2"), 10*time.Minute, e.clk.Now)
	otherTk := e.mint(other, "alice").Reveal()
	tests := map[string]string{
		"payload of another account": bobPayload + "." + mac,
		"payload edited":             forged + "." + mac,
		"payload bit flipped":        flip(payload, 5) + "." + mac,
		"mac bit flipped":            payload + "." + flip(mac, 3),
		"mac truncated":              payload + "." + mac[:len(mac)-1],
		"mac missing":                payload,
		"extra part":                 tk + ".x",
		"padding added":              tk + "=",
		"empty":                      "",
		"another client secret":      otherTk,
		"too long":                   tk + strings.Repeat("A", login.MaxTicketLen),
	}
	for name, s := range tests {
		t.Run(name, func(t *testing.T) {
			for op, f := range map[string]func(context.Context, token.Secret) (login.TicketClaims, error){"peek": e.b.Peek, "redeem": e.b.Redeem} {
				c, err := f(ctx, token.Secret(s))
				if !errors.Is(err, login.ErrTicketInvalid) || c != (login.TicketClaims{}) {
					t.Fatalf("%s: %+v %v", op, c, err)
				}
				if len(s) > 10 && strings.Contains(err.Error(), s[:10]) {
					t.Fatalf("%s: error quotes the ticket: %v", op, err)
				}
			}
		})
	}
	// None of that used up the real ticket.
	if _, err := e.b.Redeem(ctx, token.Secret(tk)); err != nil {
		t.Fatal(err)
	}
}

func TestTicketConcurrentRedeemAcrossReplicas(t *testing.T) {
	e := newTicketEnv(t)
	tk := e.mint(e.a, "alice")
	const goroutines = 50
	replicas := []*login.Tickets{e.a, e.b}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, used int
		others   []error
		start    = make(chan struct{})
	)
	for i := range goroutines {
		wg.Go(func() {
			<-start
			_, err := replicas[i%2].Redeem(context.Background(), tk)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, login.ErrTicketUsed):
				used++
			default:
				others = append(others, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok != 1 || used != goroutines-1 || len(others) != 0 {
		t.Fatalf("%d successes, %d used, other errors %v", ok, used, others)
	}
}

func TestTicketMintRefuses(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	for name, tc := range map[string]struct{ account, returnTo string }{
		"no account":         {"", ""},
		"account too long":   {strings.Repeat("a", 257), ""},
		"return_to too long": {"alice", "https://ontrack.example/" + strings.Repeat("a", login.MaxTicketLen)},
	} {
		if tk, _, err := e.a.Mint(ctx, tc.account, tc.returnTo); err == nil || tk != "" {
			t.Errorf("%s: minted", name)
		}
	}
	if _, _, err := e.a.Mint(ctx, strings.Repeat("a", 256), "https://ontrack.example/"+strings.Repeat("a", 2000)); err != nil {
		t.Errorf("longest account with a 2 kB return_to: %v", err)
	}
	boom := errors.New("vault sealed")
	broken := login.NewTickets(e.store, func(context.Context) ([]byte, error) { return nil, boom }, 0, e.clk.Now)
	if _, _, err := broken.Mint(ctx, "alice", ""); !errors.Is(err, boom) {
		t.Errorf("key error: %v", err)
	}
	if _, err := broken.Redeem(ctx, e.mint(e.a, "alice")); !errors.Is(err, boom) || errors.Is(err, login.ErrTicketInvalid) {
		t.Errorf("key error on redeem: %v", err)
	}
	noSecret := login.NewTickets(e.store, login.TicketKeyFromCredentials(token.StaticCredentials{ID: "id"}), 0, e.clk.Now)
	if _, _, err := noSecret.Mint(ctx, "alice", ""); err == nil {
		t.Error("minted without a client secret")
	}
}

func TestTicketCorruptMarkerRefuses(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	if _, err := e.store.CompareAndSwap(ctx, token.TicketMarkerKey("alice"), 0, token.Record{Dropped: "logout"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Redeem(ctx, e.mint(e.a, "alice")); !errors.Is(err, token.ErrCorrupt) {
		t.Fatalf("redeem over a foreign record: %v", err)
	}
}

func TestTicketRedacted(t *testing.T) {
	e := newTicketEnv(t)
	tk := e.mint(e.a, "alice")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("minted", "ticket", tk)
	out := fmt.Sprintf("%v %s %q %x %#v %+v", tk, tk, tk, tk, tk, tk) + logs.String()
	payload, mac, _ := strings.Cut(tk.Reveal(), ".")
	if strings.Contains(out, payload) || strings.Contains(out, mac) || !strings.Contains(out, "[redacted]") {
		t.Fatalf("ticket printed: %s", out)
	}
}

func TestParseTicketForms(t *testing.T) {
	mac := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	enc := func(payload string) string { return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + mac }
	const id = `"id":"ABCDEFGHIJKLMNOPQRSTUVWX23"`
	tests := []struct {
		name, ticket string
		ok           bool
	}{
		{"well-formed", enc(`{"v":1,"acct":"alice","ret":"https://x/","iat":1,"exp":2,` + id + `}`), true},
		{"no return_to", enc(`{"v":1,"acct":"alice","iat":1,"exp":2,` + id + `}`), true},
		{"version 2", enc(`{"v":2,"acct":"alice","iat":1,"exp":2,` + id + `}`), false},
		{"unknown field", enc(`{"v":1,"acct":"alice","iat":1,"exp":2,` + id + `,"admin":true}`), false},
		{"trailing data", enc(`{"v":1,"acct":"alice","iat":1,"exp":2,` + id + `}}`), false},
		{"second value", enc(`{"v":1,"acct":"alice","iat":1,"exp":2,` + id + `} {}`), false},
		{"no account", enc(`{"v":1,"acct":"","iat":1,"exp":2,` + id + `}`), false},
		{"exp not after iat", enc(`{"v":1,"acct":"alice","iat":2,"exp":2,` + id + `}`), false},
		{"id not base32", enc(`{"v":1,"acct":"alice","iat":1,"exp":2,"id":"abcdefghijklmnopqrstuvwx23"}`), false},
		{"not json", enc(`v=1`), false},
		{"mac too short", strings.TrimSuffix(enc(`{"v":1,"acct":"alice","iat":1,"exp":2,`+id+`}`), mac) + mac[:40], false},
	}
	for _, tt := range tests {
		c, err := login.ParseTicket(tt.ticket)
		if tt.ok != (err == nil) || err != nil && !errors.Is(err, login.ErrTicketInvalid) {
			t.Errorf("%s: %+v %v", tt.name, c, err)
		}
	}
}

// Markers written before markers had a record type of their own (Dropped =
// "ticket:<iat unix ns>:<id>") still refuse the ticket they name and older
// ones, so an upgrade does not make a redeemed ticket usable again.
func TestTicketLegacyMarkerHonoured(t *testing.T) {
	e := newTicketEnv(t)
	ctx := context.Background()
	tk := e.mint(e.a, "alice")
	c, err := login.ParseTicket(tk.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	legacy := token.Record{Dropped: fmt.Sprintf("ticket:%d:%s", c.IssuedAt.UnixNano(), c.ID)}
	if _, err := e.store.CompareAndSwap(ctx, token.TicketMarkerKey("alice"), 0, legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Redeem(ctx, tk); !errors.Is(err, login.ErrTicketUsed) {
		t.Fatalf("redeem of the ticket a legacy marker names: %v", err)
	}
	e.clk.Advance(time.Second)
	if _, err := e.a.Redeem(ctx, e.mint(e.a, "alice")); err != nil {
		t.Fatalf("redeem of a newer ticket over a legacy marker: %v", err)
	}
}
