package token

import (
	"context"
	"errors"
	"testing"
)

// rereadable counts re-reads.
type rereadable struct {
	StaticCredentials
	rereads int
}

func (r *rereadable) Reread(context.Context) error { r.rereads++; return nil }

// TestSwappableCredentials: one source handed out once reads whichever
// source is in force, and re-reads through it when that one can.
func TestSwappableCredentials(t *testing.T) {
	ctx := context.Background()
	vault := &rereadable{StaticCredentials: StaticCredentials{ID: "from-vault", Secret: "s2"}}
	s := NewSwappableCredentials(StaticCredentials{ID: "from-env", Secret: "s1"})
	var src CredentialSource = s // what the pool, the tickets and the proxy hold
	if c, err := src.Credentials(ctx); err != nil || c.ID != "from-env" {
		t.Fatalf("before the swap: %q, %v", c.ID, err)
	}
	if err := src.(Rereader).Reread(ctx); err == nil {
		t.Error("an environment source claims to re-read")
	}
	s.Swap(vault)
	if c, err := src.Credentials(ctx); err != nil || c.ID != "from-vault" {
		t.Fatalf("after the swap: %q, %v", c.ID, err)
	}
	if err := src.(Rereader).Reread(ctx); err != nil || vault.rereads != 1 {
		t.Errorf("re-read through the swapped-in source: %v, %d re-reads", err, vault.rereads)
	}
	s.Swap(StaticCredentials{})
	if _, err := src.Credentials(ctx); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("an empty source: %v", err)
	}
}
