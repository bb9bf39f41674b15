package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pipeConn feeds a fixed byte stream to a guardConn in random-sized pieces.
type pieceConn struct {
	net.Conn
	data []byte
	rnd  *rand.Rand
}

func (p *pieceConn) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + p.rnd.IntN(min(len(p.data), 700))
	n = min(n, len(b))
	copy(b, p.data[:n])
	p.data = p.data[n:]
	return n, nil
}

func guardStream(t *testing.T, in []byte, seed uint64) []byte {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &guardConn{Conn: nil, max: 64 << 10}
	g.Conn = &pieceConn{data: in, rnd: rnd}
	var out bytes.Buffer
	buf := make([]byte, 5000)
	for {
		n, err := g.Read(buf[:1+rnd.IntN(len(buf))])
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestFramingGuardIsTransparent: a stream of pipelined requests with every
// kind of framing comes out byte for byte, however the reads are split;
// only a head holding both Content-Length and Transfer-Encoding gains the
// marker line.
func TestFramingGuardIsTransparent(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 300)
	chunked := fmt.Sprintf("%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n", 100, body[:100], len(body)-100, body[100:])
	stream := "\r\n" + // a stray blank line before the first request
		"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body +
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked +
		"PUT /d HTTP/1.1\nHost: x\ncontent-length: 3\n\nxyz" + // bare LF heads
		"GET /e HTTP/1.1\r\nHost: x\r\n\r\n"
	for seed := range uint64(200) {
		if got := guardStream(t, []byte(stream), seed); string(got) != stream {
			t.Fatalf("seed %d: stream changed:\n%q\nwant\n%q", seed, got, stream)
		}
	}
	smuggle := "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
	want := strings.Replace(smuggle, "POST /s HTTP/1.1\r\n", "POST /s HTTP/1.1\r\n"+FramingConflictHeader+": 1\r\n", 1)
	for seed := range uint64(50) {
		if got := guardStream(t, []byte(smuggle), seed); string(got) != want {
			t.Fatalf("seed %d: got\n%q\nwant\n%q", seed, got, want)
		}
	}
}

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

// FuzzFramingGuard: whatever bytes arrive, the guard passes them all, in
// order, adding nothing but marker lines.
func FuzzFramingGuard(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint64(1))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint64(2))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), uint64(3))
	f.Add([]byte("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x00\x01\x02"), uint64(4))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		out := guardStream(t, in, seed)
		marker := []byte(FramingConflictHeader + ": 1\r\n")
		if !bytes.Equal(bytes.ReplaceAll(out, marker, nil), bytes.ReplaceAll(in, marker, nil)) {
			t.Fatalf("stream changed:\n%q\n%q", in, out)
		}
	})
}
