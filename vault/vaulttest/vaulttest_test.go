package vaulttest_test

import (
	"context"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
)

func TestDevSealUnsealRestart(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	c := srv.Client(t)
	ctx := context.Background()
	if _, err := c.KVv2("secret").Put(ctx, "x", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	srv.Seal()
	if st, err := c.Sys().SealStatus(); err != nil || !st.Sealed {
		t.Fatalf("after Seal: %+v, %v", st, err)
	}
	srv.Unseal()
	if s, err := c.KVv2("secret").Get(ctx, "x"); err != nil || s.Data["k"] != "v" {
		t.Fatalf("after Unseal: %v", err)
	}
	srv.Stop()
	if _, err := c.Sys().Health(); err == nil {
		t.Fatal("health answered after Stop")
	}
	srv.Start()
	// A dev server starts empty again, on the same address.
	if _, err := c.KVv2("secret").Get(ctx, "x"); err == nil {
		t.Fatal("dev data survived a restart")
	}
	if _, err := c.KVv2("secret").Put(ctx, "x", map[string]any{"k": "v2"}); err != nil {
		t.Fatal(err)
	}
}

func TestPersistentKeepsData(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartPersistent(t)
	c := srv.Client(t)
	ctx := context.Background()
	if _, err := c.KVv2("secret").Put(ctx, "x", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Start()
	if s, err := c.KVv2("secret").Get(ctx, "x"); err != nil || s.Data["k"] != "v" {
		t.Fatalf("after restart: %v", err)
	}
}
