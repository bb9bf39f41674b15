package framing

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
)

// pieceConn feeds a fixed byte stream to a guardConn in random-sized pieces.
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
	want := strings.Replace(smuggle, "POST /s HTTP/1.1\r\n", "POST /s HTTP/1.1\r\n"+ConflictHeader+": 1\r\n", 1)
	for seed := range uint64(50) {
		if got := guardStream(t, []byte(smuggle), seed); string(got) != want {
			t.Fatalf("seed %d: got\n%q\nwant\n%q", seed, got, want)
		}
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
		marker := []byte(ConflictHeader + ": 1\r\n")
		if !bytes.Equal(bytes.ReplaceAll(out, marker, nil), bytes.ReplaceAll(in, marker, nil)) {
			t.Fatalf("stream changed:\n%q\n%q", in, out)
		}
	})
}
