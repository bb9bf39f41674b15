package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

const (
	faultRounds      = 50 // rounds of every fault, for the leak count
	faultRoundsShort = 10
	faultParallel    = 5 // rounds run side by side
	faultBodySize    = 1 << 20
	faultBigResponse = 16 << 20 // more than every socket buffer on the way
	faultPrompt      = 5 * time.Second
)

// faultUpstream misbehaves on purpose, one way per path.
type faultUpstream struct {
	srv     *httptest.Server
	release chan struct{} // closed at the end: stalled handlers return
	sinking sync.Map      // query of every /sink request that reached the upstream
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // close sends RST
	}
	c.Close()
}

func newFaultUpstream(t *testing.T) *faultUpstream {
	u := &faultUpstream{release: make(chan struct{})}
	big := bytes.Repeat([]byte("0123456789abcdef"), faultBigResponse/16)
	mux := http.NewServeMux()
	// Headers promise 1 MiB; 64 KiB of it arrive, then a reset.
	mux.HandleFunc("/Panopto/Upload/reset-response", func(w http.ResponseWriter, r *http.Request) {
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", faultBodySize)
		bw.Write(big[:64<<10])
		bw.Flush()
		time.Sleep(20 * time.Millisecond)
		resetConn(c)
	})
	// The same without a length (chunked): only the missing last chunk
	// tells the client the body is short.
	mux.HandleFunc("/Panopto/Upload/reset-chunked", func(w http.ResponseWriter, r *http.Request) {
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range 4 {
			fmt.Fprintf(bw, "%x\r\n%s\r\n", 16<<10, big[:16<<10])
		}
		bw.Flush()
		time.Sleep(20 * time.Millisecond)
		resetConn(c)
	})
	// Reads 64 KiB of a large request body, then resets.
	mux.HandleFunc("/Panopto/Upload/reset-request", func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, 64<<10)
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		resetConn(c)
	})
	// Never answers.
	mux.HandleFunc("/Panopto/Upload/stall", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-u.release:
		}
	})
	// Reads the whole body, then answers.
	mux.HandleFunc("/Panopto/Upload/sink", func(w http.ResponseWriter, r *http.Request) {
		u.sinking.Store(r.URL.RawQuery, true)
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "%d", n)
	})
	mux.HandleFunc("/Panopto/Upload/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		w.Write(big)
	})
	mux.HandleFunc("/Panopto/Upload/ok", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(u.release)
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err)
	}
	return len(ents)
}

// TestUpstreamFaultsAndLeaks: through the sidecar, an upstream that resets
// mid-response, resets while reading a large upload, or never answers; a
// client that stalls mid-upload and one that stops reading. Each fault ends
// promptly with an error the client can see (never a hang, never a 200 with
// a silently short body), clients behaving well are served meanwhile, and
// after 50 rounds the goroutines and fds are back to where they started.
func TestUpstreamFaultsAndLeaks(t *testing.T) {
	dir := t.TempDir()
	addr := holdAddr(t)
	up := newFaultUpstream(t)
	sinking := &up.sinking
	cfg := baseConfig(up.srv.URL, dir) + `routes: [{prefix: /Panopto/Upload/, inject: false}]
timeouts: {upstream_headers: 1s}
`
	// The sidecar logs only through its own structured logger: anything
	// written to the standard library's global logger (plain text on
	// stderr, outside the JSON stream) is a defect.
	var stdlog testsupport.SyncBuffer
	log.SetOutput(&stdlog)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	sc := startSidecar(t, dir, addr, strings.Replace(cfg, "level: debug", "level: warn", 1), nil)
	client := &http.Client{Timeout: 20 * time.Second}

	// settle closes idle connections everywhere and waits (up to 2 s) for
	// the counts to come down to the baseline.
	goroutines0, fds0 := 1<<30, 1<<30
	settle := func() (goroutines, fds int) {
		client.CloseIdleConnections()
		http.DefaultClient.CloseIdleConnections()
		up.srv.CloseClientConnections() // the sidecar's idle upstream connections
		var g, f int
		for range 40 { // up to 2 s for goroutines to wind down
			time.Sleep(50 * time.Millisecond)
			runtime.GC()
			g, f = runtime.NumGoroutine(), openFDs(t)
			if g <= goroutines0 && f <= fds0 {
				break
			}
		}
		return g, f
	}

	round := func(id string) {
		var wg sync.WaitGroup
		run := func(name string, f func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if err := f(); err != nil {
					t.Errorf("round %s, %s: %v", id, name, err)
				}
				if d := time.Since(start); d > faultPrompt+2*time.Second {
					t.Errorf("round %s, %s: took %v", id, name, d.Round(time.Millisecond))
				}
			}()
		}
		for _, path := range []string{"reset-response", "reset-chunked"} {
			run("(a) upstream resets mid-response "+path, func() error {
				resp, err := client.Get(sc.URL + "/Panopto/Upload/" + path)
				if err != nil {
					return nil // an error the client sees
				}
				defer resp.Body.Close()
				n, err := io.Copy(io.Discard, resp.Body)
				if err == nil {
					return fmt.Errorf("status %d and a body of %d bytes that ended cleanly: a silent truncation", resp.StatusCode, n)
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
					return fmt.Errorf("body error %v, want unexpected EOF", err)
				}
				return nil
			})
		}
		run("(b) upstream resets while reading the upload", func() error {
			req, _ := http.NewRequest(http.MethodPost, sc.URL+"/Panopto/Upload/reset-request", io.LimitReader(zeros{}, 8*faultBodySize))
			req.ContentLength = 8 * faultBodySize
			resp, err := client.Do(req)
			if err != nil {
				return nil // the sidecar closed the connection: an error the client sees
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadGateway {
				return fmt.Errorf("status %d, want 502", resp.StatusCode)
			}
			if strings.TrimSpace(string(b)) != `{"error":"upstream_unavailable"}` {
				return fmt.Errorf("502 body %q", b)
			}
			return nil
		})
		run("(c) upstream never answers", func() error {
			start := time.Now()
			resp, err := client.Get(sc.URL + "/Panopto/Upload/stall")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d := time.Since(start)
			if resp.StatusCode != http.StatusGatewayTimeout || d < 900*time.Millisecond || d > 4*time.Second {
				return fmt.Errorf("status %d after %v, want 504 after timeouts.upstream_headers (1s)", resp.StatusCode, d.Round(time.Millisecond))
			}
			// A generic body; the details are for the log.
			if strings.TrimSpace(string(b)) != `{"error":"upstream_unavailable"}` {
				return fmt.Errorf("504 body %q", b)
			}
			return nil
		})
		run("(d) a stalled uploader and a slow reader do not wedge the others", func() error {
			up, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer up.Close()
			fmt.Fprintf(up, "POST /Panopto/Upload/sink?round=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n", id, faultBodySize)
			up.Write(make([]byte, 1024))

			slow, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer slow.Close()
			fmt.Fprintf(slow, "GET /Panopto/Upload/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			slow.SetReadDeadline(time.Now().Add(faultPrompt))
			if line, err := bufio.NewReaderSize(slow, 16).ReadString('\n'); err != nil || !strings.Contains(line, " 200 ") {
				return fmt.Errorf("slow reader: %q %v", line, err)
			}
			// Both are stuck once the upload reached the upstream (the
			// slow reader's response is stuck from its first line on).
			for stuck := time.Now().Add(faultPrompt); ; time.Sleep(5 * time.Millisecond) {
				if _, ok := sinking.Load("round=" + id); ok {
					break
				}
				if time.Now().After(stuck) {
					return errors.New("the stalled upload never reached the upstream")
				}
			}
			for i := range 10 {
				start := time.Now()
				resp, err := client.Get(sc.URL + "/Panopto/Upload/ok")
				if err != nil {
					return fmt.Errorf("request %d beside them: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" || time.Since(start) > time.Second {
					return fmt.Errorf("request %d beside them: %d %q in %v", i, resp.StatusCode, b, time.Since(start))
				}
			}
			return nil
		})
		wg.Wait()
	}

	// Warm up (lazy goroutines: the transport, the metrics, the logger),
	// then take the baseline.
	round("warm-up")
	g0, f0 := settle()
	goroutines0, fds0 = g0, f0

	rounds := faultRounds
	if testing.Short() {
		rounds = faultRoundsShort
	}
	start := time.Now()
	for i := 0; i < rounds; i += faultParallel {
		var wg sync.WaitGroup
		for j := i; j < min(i+faultParallel, rounds); j++ {
			wg.Add(1)
			go func() { defer wg.Done(); round(fmt.Sprint(j)) }()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	took := time.Since(start)
	g1, f1 := settle()
	t.Logf("%d rounds of upstream and client faults in %v: goroutines %d → %d, open fds %d → %d",
		rounds, took.Round(time.Millisecond), g0, g1, f0, f1)
	if g1 > g0+5 {
		t.Errorf("goroutines: %d before, %d after %d rounds of faults", g0, g1, rounds)
		buf := make([]byte, 1<<20)
		t.Logf("%s", buf[:runtime.Stack(buf, true)])
	}
	if f1 > f0+5 {
		t.Errorf("open fds: %d before, %d after %d rounds of faults", f0, f1, rounds)
	}
	if out := stdlog.String(); out != "" {
		t.Errorf("written to the standard library's global logger instead of the sidecar's log:\n%s", lastLines(out, 5))
	}
	sc.WaitLog(t, "reset") // the upstream resets are in the sidecar's log
	// Still serving after all that.
	if c := statusCode(sc.URL + "/Panopto/Upload/ok"); c != 200 {
		t.Fatalf("after the faults: %d", c)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
