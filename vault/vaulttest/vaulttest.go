// Package vaulttest starts real Vault servers for tests: a dev server
// (in-memory, root token "root") and a persistent server (file storage,
// initialised and unsealed, KV v2 at secret/) that can be stopped, started,
// sealed and unsealed to play the "Vault is down" cases.
//
// The Vault binary is found through $VAULT_BIN, then the cache written by
// .ci/build-vault.sh, then "vault" on PATH. With none of them the test is
// skipped, unless PANOPTO_SIDECAR_REQUIRE_PEERS=1 (as in CI), where it fails.
package vaulttest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Version is the Vault release the project tests against.
const Version = "1.21.4"

const (
	devRootToken = "root"
	readyTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Binary returns the path of a Vault server binary, or skips the test (fails
// it when PANOPTO_SIDECAR_REQUIRE_PEERS=1).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VAULT_BIN"); p != "" {
		if isExecutable(p) {
			return p
		}
		missing(t, fmt.Sprintf("VAULT_BIN=%s is not an executable file", p))
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "panopto-sidecar", "vault-"+Version, "vault")
		if isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath("vault"); err == nil {
		return p
	}
	missing(t, "no vault binary: set VAULT_BIN or run .ci/build-vault.sh")
	return ""
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("PANOPTO_SIDECAR_REQUIRE_PEERS") == "1" {
		t.Fatal("vaulttest: " + why)
	}
	t.Skip("vaulttest: " + why)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Server is one Vault server process owned by a test.
type Server struct {
	t      testing.TB
	bin    string
	dev    bool
	port   int
	dir    string
	log    string
	health *http.Client

	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{}
	rootToken string
	unsealKey string
	kvMounted bool
	logOffset int64
}

// StartDev starts `vault server -dev` on a free loopback port with root token
// "root". The server is stopped when the test ends. A dev server keeps its
// data in memory: Start after Stop gives an empty server on the same port.
func StartDev(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, true)
	s.rootToken = devRootToken
	s.kvMounted = true
	var err error
	for range 3 {
		s.port, err = freePortPair()
		if err != nil {
			continue
		}
		if err = s.startAndWait(); err == nil {
			return s
		}
	}
	s.fail("start dev server: %v", err)
	return nil
}

// StartPersistent starts a Vault server with file storage in a temporary
// directory, initialises it with one key share, unseals it and mounts KV v2
// at secret/. Stop and Start keep its data; Start unseals it again.
func StartPersistent(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, false)
	var err error
	for range 3 {
		s.port, err = freePortPair()
		if err != nil {
			continue
		}
		if err = s.writeConfig(); err != nil {
			s.fail("write config: %v", err)
		}
		if err = s.spawn(); err != nil {
			continue
		}
		if err = s.waitResponding(); err == nil {
			break
		}
		s.Stop()
	}
	if err != nil {
		s.fail("start persistent server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := s.rawClient("")
	init, err := c.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		s.fail("init: %v", err)
	}
	s.mu.Lock()
	s.rootToken = init.RootToken
	s.unsealKey = init.Keys[0]
	s.mu.Unlock()
	s.Unseal()
	c.SetToken(s.RootToken())
	if err := c.Sys().MountWithContext(ctx, "secret", &api.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		s.fail("mount kv-v2 at secret/: %v", err)
	}
	if err := s.waitKV(); err != nil {
		s.fail("kv-v2 not ready: %v", err)
	}
	s.mu.Lock()
	s.kvMounted = true
	s.mu.Unlock()
	return s
}

func newServer(t testing.TB, dev bool) *Server {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	s := &Server{
		t:      t,
		bin:    bin,
		dev:    dev,
		dir:    dir,
		log:    filepath.Join(dir, "vault.log"),
		health: &http.Client{Timeout: 2 * time.Second},
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			s.dumpLog()
		}
	})
	return s
}

// Addr is the server's base URL, http://127.0.0.1:PORT.
func (s *Server) Addr() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) }

// RootToken is a token with the root policy.
func (s *Server) RootToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rootToken
}

// Client returns a client authenticated with the root token, for test setup.
func (s *Server) Client(t testing.TB) *api.Client {
	t.Helper()
	return s.rawClient(s.RootToken())
}

func (s *Server) rawClient(token string) *api.Client {
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr()
	cfg.Timeout = 10 * time.Second
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		s.fail("vault client: %v", err)
	}
	c.SetToken(token)
	c.ClearNamespace()
	return c
}

// Stop kills the server process: to its clients, Vault is down.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		s.t.Errorf("vaulttest: server pid %d did not exit", cmd.Process.Pid)
	}
}

// Start starts the server again on the same port and waits until it serves
// (a persistent server is unsealed again).
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return
	}
	if s.dev {
		if err := s.startAndWait(); err != nil {
			s.fail("restart dev server: %v", err)
		}
		return
	}
	if err := s.spawn(); err != nil {
		s.fail("restart: %v", err)
	}
	if err := s.waitResponding(); err != nil {
		s.fail("restart: %v", err)
	}
	s.Unseal()
}

// Seal seals the server; it answers 503 until Unseal.
func (s *Server) Seal() {
	s.t.Helper()
	if err := s.rawClient(s.RootToken()).Sys().Seal(); err != nil {
		s.fail("seal: %v", err)
	}
}

// Unseal unseals the server with its key and waits until KV v2 serves.
func (s *Server) Unseal() {
	s.t.Helper()
	s.mu.Lock()
	key, kv := s.unsealKey, s.kvMounted
	s.mu.Unlock()
	if key == "" && s.dev {
		key = s.devUnsealKey()
		s.mu.Lock()
		s.unsealKey = key
		s.mu.Unlock()
	}
	if key == "" {
		s.fail("unseal: no unseal key known")
	}
	st, err := s.rawClient("").Sys().Unseal(key)
	if err != nil {
		s.fail("unseal: %v", err)
	}
	if st.Sealed {
		s.fail("unseal: still sealed after one key share")
	}
	if err := s.waitActive(); err != nil {
		s.fail("unseal: %v", err)
	}
	if kv {
		if err := s.waitKV(); err != nil {
			s.fail("unseal: %v", err)
		}
	}
}
