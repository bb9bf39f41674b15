package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestFramingGuardRefusesConflict: through a real server, the conflicting
// request gets 400 and the connection is closed; ordinary pipelined
// requests on a guarded listener work.
func TestFramingGuardRefusesConflict(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := New(Deps{Accounts: nil}, Options{})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(FramingGuard(ln, 64<<10))
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /-/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd"+
		"POST /Panopto/api/v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var codes []int
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if fmt.Sprint(codes) != "[200 200 400]" {
		t.Fatalf("answers %v, want [200 200 400] and then a closed connection", codes)
	}
}
