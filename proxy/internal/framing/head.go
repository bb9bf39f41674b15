package framing

import (
	"bytes"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
)

// Reasons a head is refused: the value of the ConflictHeader marker.
const (
	ReasonConflict        = "cl-te"     // both Content-Length and Transfer-Encoding
	ReasonObsFold         = "obs-fold"  // a header line folded onto the previous one (obs-fold)
	ReasonTENotHTTP11     = "te-http10" // Transfer-Encoding on a request that is not HTTP/1.1
	ReasonBadLength       = "bad-cl"    // a Content-Length that does not parse, or several that differ
	ReasonBadCoding       = "bad-te"    // a Transfer-Encoding other than one "chunked"
	ReasonMalformedHeader = "bad-field" // a header line that is not "name: value"
)

// Reason describes a marker value for a log line. A value the guard never
// sets (a client sending the marker itself) gives ok false.
func Reason(v string) (text string, ok bool) {
	switch v {
	case ReasonConflict:
		return "both Content-Length and Transfer-Encoding", true
	case ReasonObsFold:
		return "a folded (obs-fold) header line", true
	case ReasonTENotHTTP11:
		return "Transfer-Encoding on a request that is not HTTP/1.1", true
	case ReasonBadLength:
		return "an invalid or repeated Content-Length", true
	case ReasonBadCoding:
		return "a Transfer-Encoding other than chunked", true
	case ReasonMalformedHeader:
		return "a malformed header line", true
	}
	return "", false
}

// verdict is what a request head means for the bytes after it.
type verdict struct {
	refuse  string // a Reason… constant, or "" when the head is served
	chunked bool   // a chunked body follows
	length  uint64 // else: the Content-Length (0: no body)
}

// inspect reads a complete request head (request line, header lines, the
// empty line) the way Go's HTTP/1 server does, and is stricter wherever
// the two could disagree about where the next request starts: any head
// whose framing is not exactly one of "no body", one valid Content-Length
// (repeats allowed only when identical, as Go allows them) or a single
// "Transfer-Encoding: chunked" on HTTP/1.1 is refused. Header values other
// than the framing ones are left to the server to validate, except that
// a line must be "token: value" without control characters, so that the
// guard and the server see the same header lines.
func inspect(head []byte) verdict {
	reqLine, rest := cutLine(head)
	var (
		length         []byte
		hasCL          bool
		teCount        int
		chunked        bool
		refuseBadField bool
	)
	for len(rest) > 0 {
		var line []byte
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // the empty line that ends the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			return verdict{refuse: ReasonObsFold}
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) || !isFieldValue(value) {
			refuseBadField = true
			continue // an obs-fold further down still names the better reason
		}
		value = trimOWS(value)
		switch {
		case ascii.EqualFold(name, "Content-Length"):
			if hasCL && !bytes.Equal(value, length) {
				return verdict{refuse: ReasonBadLength}
			}
			hasCL, length = true, value
		case ascii.EqualFold(name, "Transfer-Encoding"):
			teCount++
			chunked = ascii.EqualFold(value, "chunked")
		}
	}
	switch {
	case refuseBadField:
		return verdict{refuse: ReasonMalformedHeader}
	case teCount > 0 && !bytes.Equal(proto(reqLine), []byte("HTTP/1.1")):
		// Go ignores Transfer-Encoding on HTTP/1.0 (and reads no body);
		// a front end may not.
		return verdict{refuse: ReasonTENotHTTP11}
	case teCount > 1 || teCount == 1 && !chunked:
		return verdict{refuse: ReasonBadCoding}
	case teCount == 1 && hasCL:
		return verdict{refuse: ReasonConflict}
	case teCount == 1:
		return verdict{chunked: true}
	case hasCL:
		n, ok := parseLength(length)
		if !ok {
			return verdict{refuse: ReasonBadLength}
		}
		return verdict{length: n}
	}
	return verdict{}
}

// cutLine splits off the first line of b without its line end ("\n" and
// one "\r" before it, as bufio.Reader.ReadLine drops them).
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// proto is the request line's version, as Go's parseRequestLine splits
// it: everything after the second space.
func proto(reqLine []byte) []byte {
	_, rest, ok := bytes.Cut(reqLine, []byte(" "))
	if !ok {
		return nil
	}
	_, p, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return nil
	}
	return p
}

// parseLength parses a Content-Length as Go does: decimal digits only (no
// sign, no spaces inside), at most 2^63-1.
func parseLength(v []byte) (uint64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n uint64
	for _, b := range v {
		if b < '0' || b > '9' {
			return 0, false
		}
		if n > (1<<63-1-uint64(b-'0'))/10 {
			return 0, false
		}
		n = n*10 + uint64(b-'0')
	}
	return n, true
}

// parseChunkSize parses a chunk-size line (without its CRLF) as Go's
// chunked reader does: trailing spaces and tabs trimmed, an extension after
// ';' ignored, then 1 to 16 hex digits and nothing else.
func parseChunkSize(line []byte) (uint64, bool) {
	line = bytes.TrimRight(line, " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n uint64
	for _, b := range line {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b -= 'a' - 10
		case 'A' <= b && b <= 'F':
			b -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(b)
	}
	return n, true
}

// trailerLine reports whether a trailer line (CRLF included) is one the
// guard follows: "token: value" ended by CRLF, not folded.
func trailerLine(line []byte) bool {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || line[n-1] != '\n' {
		return false
	}
	line = line[:n-2]
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return false
	}
	name, value, ok := bytes.Cut(line, []byte(":"))
	return ok && isToken(name) && isFieldValue(value)
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isToken reports whether b is an RFC 9110 token (a valid field name).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

// isFieldValue reports whether b holds no control characters but HTAB
// (Go's server refuses the others too).
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
