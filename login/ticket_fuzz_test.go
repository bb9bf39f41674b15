package login_test

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/login"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// FuzzParseTicket feeds arbitrary strings to ParseTicket and Peek: neither
// panics, a refusal is ErrTicketInvalid with empty claims, what parses is
// well-formed, and only the one ticket minted here is ever authentic.
// Seeds are in testdata/fuzz/FuzzParseTicket and below.
func FuzzParseTicket(f *testing.F) {
	clk := testsupport.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	tickets := login.NewTickets(token.NewFileStore(filepath.Join(f.TempDir(), "token.json")),
		// A key of this process's own: with -fuzz each worker process mints
		// its own good ticket, and another worker's must not verify here.
		staticKey(rand.Text()), 10*time.Minute, clk.Now)
	minted, _, err := tickets.Mint(context.Background(), "alice", "https://ontrack.example/done")
	if err != nil {
		f.Fatal(err)
	}
	good := minted.Reveal()
	f.Add(good)
	f.Add("")
	f.Add(".")
	f.Add("a.b")
	f.Add(good + "." + good)
	f.Add(strings.Repeat("A", login.MaxTicketLen+1))

	f.Fuzz(func(t *testing.T, s string) {
		c, err := login.ParseTicket(s)
		if err != nil {
			if !errors.Is(err, login.ErrTicketInvalid) || c != (login.TicketClaims{}) {
				t.Fatalf("refusal %v with claims %+v", err, c)
			}
		} else {
			if len(s) > login.MaxTicketLen {
				t.Fatalf("accepted %d bytes", len(s))
			}
			if c.Account == "" || len(c.Account) > 256 || !c.Expires.After(c.IssuedAt) || len(c.ID) != 26 {
				t.Fatalf("accepted malformed claims %+v", c)
			}
		}
		pc, perr := tickets.Peek(context.Background(), token.Secret(s))
		if (perr == nil) != (s == good) {
			t.Fatalf("Peek(%q) = %+v, %v", s, pc, perr)
		}
		if perr != nil && err == nil && !errors.Is(perr, login.ErrTicketInvalid) {
			t.Fatalf("Peek of a forged ticket: %v", perr)
		}
	})
}
