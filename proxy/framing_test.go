package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveGuarded serves h on a guarded 127.0.0.1 listener, as the sidecar
// serves plain HTTP, and returns its address.
func serveGuarded(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10}
	gl := FramingGuard(srv, ln)
	go srv.Serve(gl)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// answers writes raw to a new connection and returns the status of every
// answer read before the server closed it.
func answers(t *testing.T, addr, raw string) []int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var codes []int
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
}

// TestFramingGuardRefusesSmuggling: through a real server, each
// request-smuggling shape is refused (400 from the handler, or the
// server's own 4xx/5xx) and the connection closed, so no request behind it
// is read, however the requests before it were framed; ordinary pipelined
// requests, bodies that hold a request head included, are all answered
// (POST /-/healthz with 405).
func TestFramingGuardRefusesSmuggling(t *testing.T) {
	h := New(Deps{Accounts: nil}, Options{})
	addr := serveGuarded(t, h)
	const (
		clte = "POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		last = "GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
	)
	chunkedBody := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(clte), clte)
	cases := []struct {
		name, raw, want string
	}{
		{"pipelined, bodies shaped like requests",
			"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
				"POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + fmt.Sprint(len(clte)) + "\r\n\r\n" + clte +
				"POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody +
				"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + last,
			"[200 405 405 200 200]"},
		{"CL+TE", "GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" + clte + last, "[200 400]"},
		{"CL+TE after an Upgrade answered without 101",
			"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + clte + last, "[200 400]"},
		{"obs-fold hiding Transfer-Encoding, then CL+TE",
			"GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n" + clte + last, "[400]"},
		{"obs-fold", "GET /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\n\tc\r\n\r\n" + last, "[400]"},
		{"HTTP/1.0 with Transfer-Encoding, then CL+TE",
			"GET /-/healthz HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + clte + last, "[400]"},
		{"Content-Length with a plus", "POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +5\r\n\r\n0\r\n\r\n" + last, "[400]"},
		{"Content-Lengths that differ", "POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n0\r\n\r\n" + last, "[400]"},
		{"Transfer-Encoding: chunked, identity", "POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + last, "[501]"},
		{"Transfer-Encoding: identity with a length", "POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n" + clte + last, "[501]"},
		{"a malformed chunk, then a request", "POST /-/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXY0\r\n\r\n" + last, "[405]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(answers(t, addr, tc.raw)); got != tc.want {
				t.Fatalf("answers %v, want %s and then a closed connection", got, tc.want)
			}
		})
	}
}

// TestFramingGuardPassesSwitchedProtocols: once a hijacking handler has
// answered 101, the bytes that follow pass unparsed: a line without its
// end, and a head the guard would otherwise refuse, reach it unchanged.
func TestFramingGuardPassesSwitchedProtocols(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 512)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				conn.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	addr := serveGuarded(t, mux)
	switched(t, addr, "/echo")
}

// switched upgrades a connection to the "echo" protocol at target and
// checks that what follows comes back unchanged.
func switched(t *testing.T, addr, target string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET "+target+" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %v, %v", resp, err)
	}
	for _, msg := range []string{
		"no line end",
		"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n\x00\xff",
	} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echoed %q, %v; want %q", got, err, msg)
		}
	}
}

// TestFramingGuardUpgradeThroughTheProxy: an upstream that switches
// protocols on a route works through the sidecar on a guarded listener (the
// reverse proxy hijacks the connection and writes the 101).
func TestFramingGuardUpgradeThroughTheProxy(t *testing.T) {
	up := &recordingUpstream{raw: func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}}
	e := newEnv(t, envConfig{upstream: up, connected: true})
	addr := serveGuarded(t, e.h)
	switched(t, addr, "/Panopto/api/v1/echo")
}

// TestFramingRefusalReason: the guard's marker says why a request is
// refused; a marker a client sent itself is refused too, without trusting
// its value.
func TestFramingRefusalReason(t *testing.T) {
	cases := []struct {
		values  []string
		refused bool
		reason  string
	}{
		{nil, false, ""},
		{[]string{"obs-fold"}, true, "a folded (obs-fold) header line"},
		{[]string{"cl-te"}, true, "both Content-Length and Transfer-Encoding"},
		{[]string{"te-http10"}, true, "Transfer-Encoding on a request that is not HTTP/1.1"},
		{[]string{"1"}, true, "framing marker sent by the client"},
		{[]string{"cl-te", "cl-te"}, true, "framing marker sent by the client"},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		if tc.values != nil {
			r.Header[FramingConflictHeader] = tc.values
		}
		reason, refused := framingRefusal(r)
		if refused != tc.refused || reason != tc.reason {
			t.Errorf("%q: got %q, %v; want %q, %v", tc.values, reason, refused, tc.reason, tc.refused)
		}
	}
}
