package framing

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

// pieceConn feeds a fixed byte stream to a guardConn in random-sized pieces,
// and keeps what is written to it.
type pieceConn struct {
	net.Conn
	data    []byte
	rnd     *rand.Rand
	written bytes.Buffer
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

func (p *pieceConn) Write(b []byte) (int, error) { return p.written.Write(b) }

func newPieceGuard(in []byte, seed uint64) (*guardConn, *rand.Rand) {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return &guardConn{Conn: &pieceConn{data: in, rnd: rnd}, max: 64 << 10}, rnd
}

// readAll reads g to EOF in random-sized reads.
func readAll(t testing.TB, g *guardConn, rnd *rand.Rand) []byte {
	t.Helper()
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

func guardStream(t testing.TB, in []byte, seed uint64) []byte {
	t.Helper()
	g, rnd := newPieceGuard(in, seed)
	return readAll(t, g, rnd)
}

func tail(s string) string { return s[max(0, len(s)-120):] }

func marker(reason string) string { return ConflictHeader + ": " + reason + "\r\n" }

// TestFramingGuardIsTransparent: a stream of pipelined requests with every
// kind of framing the server serves comes out byte for byte, however the
// reads are split, including bodies that hold text shaped like a request
// head.
func TestFramingGuardIsTransparent(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 300)
	smuggle := "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
	chunked := fmt.Sprintf("%x\r\n%s\r\n%x;ext=1\r\n%s\r\n%X \t\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n",
		100, body[:100], len(body)-100, body[100:], len(smuggle), smuggle)
	stream := "\r\n" + // a stray blank line before the first request
		"GET /a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body +
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked +
		"PUT /d HTTP/1.1\nHost: x\ncontent-length: 3\n\nxyz" + // bare LF heads
		"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(smuggle)) + "\r\n\r\n" + smuggle +
		"PUT /f HTTP/1.1\r\nContent-Length:\t 05 \r\ncontent-length: 05\r\n\r\nabcde" + // identical repeats, as Go allows
		"POST /g HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n" +
		"GET /h HTTP/1.0\r\n\r\n" +
		"GET /i HTTP/1.1\r\nHost: x\r\n\r\n"
	for seed := range uint64(200) {
		if got := guardStream(t, []byte(stream), seed); string(got) != stream {
			t.Fatalf("seed %d: stream changed:\n%q\nwant\n%q", seed, got, stream)
		}
	}
}

// TestFramingGuardRefuses: a head with ambiguous framing reaches the server
// marked, with nothing after it (its body and any pipelined request stay
// unread), wherever it sits in the stream.
func TestFramingGuardRefuses(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
	const cltePost = "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name, before, head, after, reason string
	}{
		{"CL and TE", "", cltePost, "0\r\n\r\n" + next, ReasonConflict},
		{"TE and CL", "", "POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", "0\r\n\r\n", ReasonConflict},
		{"CL+TE after an Upgrade answered without 101", "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", cltePost, "0\r\n\r\n" + next, ReasonConflict},
		{"CL+TE after a pipelined body", "POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", cltePost, "0\r\n\r\n", ReasonConflict},
		{"obs-fold hiding TE", "", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n", cltePost + "0\r\n\r\n", ReasonObsFold},
		{"obs-fold with a tab", "", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n", next, ReasonObsFold},
		{"obs-fold as the first header line", "", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", next, ReasonObsFold},
		{"obs-fold of spaces only", "", "GET / HTTP/1.1\r\nHost: x\r\n \r\n\r\n", next, ReasonObsFold},
		{"obs-fold of TE's value", "", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", "0\r\n\r\n", ReasonObsFold},
		{"HTTP/1.0 with TE", "", "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", cltePost + "0\r\n\r\n", ReasonTENotHTTP11},
		{"HTTP/1.2 with TE", "", "POST / HTTP/1.2\r\nTransfer-Encoding: chunked\r\n\r\n", "0\r\n\r\n", ReasonTENotHTTP11},
		{"TE with no version", "", "POST /\r\nTransfer-Encoding: chunked\r\n\r\n", "0\r\n\r\n", ReasonTENotHTTP11},
		{"CL with a plus", "", "POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n", "abcd" + next, ReasonBadLength},
		{"CL negative", "", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", next, ReasonBadLength},
		{"CL with a space inside", "", "POST / HTTP/1.1\r\nContent-Length: 4 4\r\n\r\n", "abcd", ReasonBadLength},
		{"CL as a list", "", "POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n", "abcd", ReasonBadLength},
		{"CL in hex", "", "POST / HTTP/1.1\r\nContent-Length: 0x4\r\n\r\n", "abcd", ReasonBadLength},
		{"CL empty", "", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", next, ReasonBadLength},
		{"CL too large", "", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", next, ReasonBadLength},
		{"two CLs that differ", "", "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 04\r\n\r\n", "abcd", ReasonBadLength},
		{"TE chunked, identity", "", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "0\r\n\r\n", ReasonBadCoding},
		{"TE gzip, chunked", "", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "0\r\n\r\n", ReasonBadCoding},
		{"TE identity", "", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", next, ReasonBadCoding},
		{"TE twice", "", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "0\r\n\r\n", ReasonBadCoding},
		{"TE with a Kelvin sign", "", "POST / HTTP/1.1\r\nTransfer-Encoding: chun\u212aed\r\n\r\n", "0\r\n\r\n", ReasonBadCoding},
		{"a space before the colon", "", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n", "abcd", ReasonMalformedHeader},
		{"a line without a colon", "", "GET / HTTP/1.1\r\nHost x\r\n\r\n", next, ReasonMalformedHeader},
		{"a bare CR in a value", "", "GET / HTTP/1.1\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n", next, ReasonMalformedHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.before + tc.head + tc.after
			want := tc.before + strings.TrimSuffix(tc.head, "\r\n") + marker(tc.reason) + "\r\n"
			for seed := range uint64(50) {
				if got := guardStream(t, []byte(in), seed); string(got) != want {
					t.Fatalf("seed %d: got\n%q\nwant\n%q", seed, got, want)
				}
			}
		})
	}
}

// TestFramingGuardStopsWhereItCannotFollow: a body the server would find
// malformed ends the stream right after the offending bytes, so nothing
// behind them can be read as a request.
func TestFramingGuardStopsWhereItCannotFollow(t *testing.T) {
	const head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	const smuggled = "POST /s HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
	overheadLine := "1;" + strings.Repeat("e", 200) + "\r\n"
	cases := []struct{ name, ok, bad, dropped string }{
		{"bare LF chunk line", head, "3\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"CR inside a chunk line", head, "3\r;x\r\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"sign in a chunk size", head, "+3\r\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"space before a chunk size", head, " 3\r\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"space before an extension", head, "3 ;x\r\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"0x in a chunk size", head, "0x3\r\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"17 hex digits", head, "00000000000000003\r\n", "abc\r\n0\r\n\r\n" + smuggled},
		{"no CRLF after chunk data", head + "3\r\nabc", "X", "\n0\r\n\r\n" + smuggled},
		{"LF only after chunk data", head + "3\r\nabc", "\n", "0\r\n\r\n" + smuggled},
		{"folded trailer", head + "0\r\nX-T: a\r\n", " b\r\n", "\r\n" + smuggled},
		{"bare LF trailer", head + "0\r\n", "X-T: a\n", "\r\n" + smuggled},
		{"trailer without a colon", head + "0\r\n", "X-T\r\n", "\r\n" + smuggled},
		{"long chunk line", head, "1;" + strings.Repeat("e", maxChunkLine) + "\r\n", "a\r\n0\r\n\r\n" + smuggled},
		{"long trailers", head + "0\r\n", strings.Repeat("X-T: 0123456789abcdef\r\n", 200)[:maxTrailers+1] + "\r\n", "\r\n" + smuggled},
		{"too much chunk overhead", head + strings.Repeat(overheadLine+"x\r\n", 88), overheadLine, "x\r\n0\r\n\r\n" + smuggled},
		{"oversized head", "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 64<<10-30), strings.Repeat("a", 1000), "\r\n\r\n" + smuggled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.ok + tc.bad + tc.dropped
			for seed := range uint64(50) {
				got := string(guardStream(t, []byte(in), seed))
				if !strings.HasPrefix(in, got) || len(got) < len(tc.ok) || len(got) > len(tc.ok)+len(tc.bad) {
					t.Fatalf("seed %d: got %d bytes ending\n%q\nwant %d to %d of\n%q", seed, len(got), tail(got), len(tc.ok), len(tc.ok)+len(tc.bad), tail(tc.ok+tc.bad))
				}
			}
		})
	}
}

// TestFramingGuardSwitchesOnlyAfter101: bytes pass unparsed (here: a line
// held back for its end, and a CL+TE head left unmarked) only once the
// server hijacked the connection and wrote 101; a 101 without a hijack, or
// a hijack answered otherwise, leaves the connection HTTP.
func TestFramingGuardSwitchesOnlyAfter101(t *testing.T) {
	const upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	const after = "POST /s HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\x00\x01 no line end"
	cases := []struct {
		name     string
		hijack   bool
		writes   []string
		switched bool
	}{
		{"hijacked, 101", true, []string{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"}, true},
		{"hijacked, 101 written a byte at a time", true, strings.Split("HTTP/1.1 101 Switching Protocols\r\n\r\n", ""), true},
		{"hijacked, 200", true, []string{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}, false},
		{"hijacked, 1010", true, []string{"HTTP/1.1 1010 Odd\r\n\r\n"}, false},
		{"hijacked, nothing written", true, nil, false},
		{"101 without a hijack", false, []string{"HTTP/1.1 101 Switching Protocols\r\n\r\n"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, rnd := newPieceGuard([]byte(upgrade), 7)
			buf := make([]byte, len(upgrade))
			if _, err := io.ReadFull(g, buf); err != nil || string(buf) != upgrade {
				t.Fatalf("read %q, %v", buf, err)
			}
			// The client sends more only once it has its answer.
			g.Conn.(*pieceConn).data = []byte(after)
			if tc.hijack {
				ConnState(g, http.StateHijacked)
			}
			for _, w := range tc.writes {
				g.Write([]byte(w))
			}
			got := string(readAll(t, g, rnd))
			want := after
			if !tc.switched {
				want = after[:strings.Index(after, "\r\n\r\n")+2] + marker(ReasonConflict) + "\r\n"
			}
			if got != want {
				t.Fatalf("got\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// FuzzFramingGuard: whatever bytes arrive, the guard passes a prefix of
// them, in order, adding nothing but one marker line in a refused head,
// which is then the last thing passed; and it agrees with Go's own request
// reader about where every request Go would serve begins (see
// checkAgainstGo).
func FuzzFramingGuard(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x00\x01\x02",
		// Upgrade without 101, then CL+TE.
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
		// obs-fold, and a folded TE.
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\tchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
		// HTTP/1.0 with TE.
		"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		// Bad and repeated lengths.
		"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcdGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length:  3 \r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		// Bad codings.
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc",
		// Pipelined follow-ups, bodies shaped like heads, trailers, stray CRLF.
		"POST / HTTP/1.1\r\nContent-Length: 27\r\n\r\nGET /in-body HTTP/1.1\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1b;x=y\r\nGET /in-body HTTP/1.1\r\n\r\n\r\n0\r\nX-T: 1\r\n\r\nPUT / HTTP/1.1\nContent-Length: 1\n\nzGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s), uint64(len(s)))
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		g, rnd := newPieceGuard(in, seed)
		var heads []int64
		g.onHead = func(off int64) { heads = append(heads, off) }
		out := readAll(t, g, rnd)
		checkTransparent(t, in, out)
		checkAgainstGo(t, out, heads)
	})
}

// checkTransparent: out is a prefix of in plus at most one marker line,
// and after a marked head nothing follows.
func checkTransparent(t *testing.T, in, out []byte) {
	t.Helper()
	if bytes.HasPrefix(in, out) {
		return
	}
	prefix := []byte(ConflictHeader + ": ")
	for i := 0; ; i++ {
		k := bytes.Index(out[i:], prefix)
		if k < 0 {
			t.Fatalf("stream changed:\n%q\n%q", in, out)
		}
		i += k
		j := bytes.IndexByte(out[i:], '\n')
		if i == 0 || out[i-1] != '\n' || j < 0 {
			continue
		}
		rest := out[i+j+1:]
		if !bytes.HasPrefix(in[i:], rest) || !bytes.Equal(in[:i], out[:i]) {
			continue
		}
		if _, ok := Reason(string(bytes.TrimSuffix(out[i+len(prefix):i+j], []byte("\r")))); !ok {
			t.Fatalf("marker with an unknown reason in %q", out)
		}
		// The marked head ends at the first empty line, and so does out.
		pos := 0
		for {
			e := bytes.IndexByte(rest[pos:], '\n')
			if e < 0 {
				t.Fatalf("a marked head without its end: %q", out)
			}
			line := rest[pos : pos+e+1]
			pos += e + 1
			if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
				break
			}
		}
		if pos != len(rest) {
			t.Fatalf("bytes after a marked head: %q", out)
		}
		return
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkAgainstGo reads out as Go's HTTP/1 server does (http.ReadRequest
// over a 4 KiB buffer, each body read to its end, CR and LF skipped after
// a POST) and checks that every request Go reads begins where the guard
// saw a head begin (so the two never disagree about framing), and that a
// request Go would serve unmarked has no ambiguous framing in Go's own
// view of its head. It goes on after a body error, as a server that has
// already answered a full-duplex request may.
func checkAgainstGo(t *testing.T, out []byte, heads []int64) {
	t.Helper()
	cr := &countingReader{r: bytes.NewReader(out)}
	br := bufio.NewReaderSize(cr, 4096)
	afterPost := false
	for {
		if afterPost {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		off := cr.n - int64(br.Buffered())
		req, err := http.ReadRequest(br)
		if err != nil {
			return // the server answers 4xx/5xx and closes
		}
		if !slices.Contains(heads, off) {
			t.Fatalf("Go reads a request at %d, the guard saw heads at %v:\n%q", off, heads, out)
		}
		if _, marked := req.Header[ConflictHeader]; marked || req.ProtoMajor != 1 {
			return // refused by the handler, or 505: the connection closes
		}
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(out[off:])))
		reqLine, _ := tp.ReadLine()
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("Go read %q but not its head again: %v", reqLine, err)
		}
		switch {
		case len(hdr["Content-Length"]) > 0 && len(hdr["Transfer-Encoding"]) > 0:
			t.Fatalf("served with both Content-Length and Transfer-Encoding: %q", out[off:])
		case len(hdr["Transfer-Encoding"]) > 0 && !req.ProtoAtLeast(1, 1):
			t.Fatalf("served HTTP/1.0 with Transfer-Encoding: %q", out[off:])
		}
		for rest := out[off:]; ; {
			var line []byte
			line, rest = cutLine(rest)
			if len(line) == 0 {
				break
			}
			if line[0] == ' ' || line[0] == '\t' {
				t.Fatalf("served with a folded header line: %q", out[off:])
			}
		}
		_, _ = io.Copy(io.Discard, req.Body)
		afterPost = req.Method == "POST"
	}
}

// onceConn hands out one stream, then EOF.
type onceConn struct {
	net.Conn
	r bytes.Reader
}

func (o *onceConn) Read(p []byte) (int, error) { return o.r.Read(p) }

// BenchmarkGuard: the guard's cost per request on a keep-alive connection
// (pipelined GETs and small bodies by length and by chunks), read the way
// the server reads: 4 KiB at a time.
func BenchmarkGuard(b *testing.B) {
	one := "GET /Panopto/api/v1/folders/search?searchQuery=a HTTP/1.1\r\nHost: 127.0.0.1:9127\r\nUser-Agent: Ruby\r\nAccept: */*\r\n\r\n" +
		"POST /Panopto/api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:9127\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"Name\":\"a\",\"FolderId\":\"b\"}" +
		"PUT /-/uploads HTTP/1.1\r\nHost: 127.0.0.1:9127\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + strings.Repeat("x", 1024) + "\r\n0\r\n\r\n"
	stream := []byte(strings.Repeat(one, 100))
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	c := &onceConn{}
	g := &guardConn{Conn: c, max: 64 << 10}
	for b.Loop() {
		c.r.Reset(stream)
		g.state = stHead
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*300), "ns/request")
}
