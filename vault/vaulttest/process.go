package vaulttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The dev or persistent Vault process: spawn it, wait until it answers and
// its KV mount is ready, and report its log when a test fails.

func (s *Server) startAndWait() error {
	if err := s.spawn(); err != nil {
		return err
	}
	if err := s.waitActive(); err != nil {
		s.Stop()
		return err
	}
	return nil
}

func (s *Server) spawn() error {
	var args []string
	if s.dev {
		args = []string{"server", "-dev",
			"-dev-root-token-id=" + devRootToken,
			"-dev-listen-address=127.0.0.1:" + strconv.Itoa(s.port),
			"-dev-no-store-token",
		}
	} else {
		args = []string{"server", "-config=" + filepath.Join(s.dir, "config.hcl")}
	}
	out, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "==== vaulttest: %s %s\n", s.bin, strings.Join(args, " "))
	offset, _ := out.Seek(0, io.SeekEnd)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"HOME=" + s.dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + s.dir}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.logOffset = cmd, exited, offset
	s.mu.Unlock()
	return nil
}

// startedMarker is what Vault prints once its listeners are bound.
const startedMarker = "Vault server started!"

// ownServerUp reports whether this process printed startedMarker since it
// was spawned: until then a health answer on the port may come from another
// server that holds it.
func (s *Server) ownServerUp() bool {
	s.mu.Lock()
	offset := s.logOffset
	s.mu.Unlock()
	f, err := os.Open(s.log)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	return err == nil && strings.Contains(string(b), startedMarker)
}

// waitResponding waits until the HTTP API answers at all (sealed or not).
func (s *Server) waitResponding() error {
	return s.poll(func(code int) bool { return code != 0 })
}

// waitActive waits until sys/health says initialised, unsealed and active.
func (s *Server) waitActive() error {
	return s.poll(func(code int) bool { return code == http.StatusOK })
}

func (s *Server) poll(ok func(code int) bool) error {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("vault exited during startup (see its log)")
		default:
		}
		code := 0
		resp, err := s.health.Get(s.Addr() + "/v1/sys/health")
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
			last = resp.Status
		} else {
			last = err.Error()
		}
		if ok(code) && s.ownServerUp() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %s", readyTimeout, last)
}

// waitKV waits until KV v2 at secret/ accepts a write: a fresh or unsealed
// mount upgrades itself in the background for a moment.
func (s *Server) waitKV() error {
	c := s.rawClient(s.RootToken())
	deadline := time.Now().Add(readyTimeout)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.KVv2("secret").Put(ctx, "vaulttest/ready", map[string]any{"ok": "1"})
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (s *Server) writeConfig() error {
	data := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	hcl := fmt.Sprintf(`storage "file" {
  path = %q
}
listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}
api_addr      = "http://127.0.0.1:%d"
cluster_addr  = "https://127.0.0.1:%d"
disable_mlock = true
ui            = false
log_level     = "info"
`, data, s.port, s.port, s.port+1)
	return os.WriteFile(filepath.Join(s.dir, "config.hcl"), []byte(hcl), 0o600)
}

// devUnsealKey reads the unseal key a dev server prints at start.
func (s *Server) devUnsealKey() string {
	f, err := os.Open(s.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	key := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Unseal Key: "); ok {
			key = strings.TrimSpace(k)
		}
	}
	return key
}

func (s *Server) dumpLog() {
	b, err := os.ReadFile(s.log)
	if err != nil {
		s.t.Logf("vaulttest: no server log: %v", err)
		return
	}
	const max = 16 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	s.t.Logf("vaulttest: vault server log (%s):\n%s", s.log, b)
}

func (s *Server) fail(format string, args ...any) {
	s.t.Helper()
	s.dumpLog()
	s.t.Fatalf("vaulttest: "+format, args...)
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePortPair finds a loopback port p with p+1 also free (Vault binds p+1
// for cluster traffic).
func freePortPair() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		if portsUsed[p] || portsUsed[p+1] {
			continue // handed to another server of this test binary
		}
		portsUsed[p], portsUsed[p+1] = true, true
		return p, nil
	}
	return 0, errors.New("no free port pair on 127.0.0.1")
}
