package login

import (
	"context"
	"fmt"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// ParseTicket decodes a ticket's claims without authenticating them.
func ParseTicket(s string) (TicketClaims, error) {
	c, _, _, err := parseTicket(s)
	return c, err
}

// Peek verifies ticket as Redeem does, without using it up.
func (t *Tickets) Peek(ctx context.Context, ticket token.Secret) (TicketClaims, error) {
	c, err := t.verify(ctx, ticket)
	if err != nil {
		return c, err
	}
	key := token.TicketMarkerKey(c.Account)
	rec, _, err := t.store.Load(ctx, key)
	if err != nil {
		return c, fmt.Errorf("peek login ticket: load %s: %w", key, err)
	}
	if err := checkMarker(rec, c); err != nil {
		return c, fmt.Errorf("peek login ticket for %s: %w", c.Account, err)
	}
	return c, nil
}
