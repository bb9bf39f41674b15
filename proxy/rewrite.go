package proxy

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/internal/ascii"
)

// maxRewriteBody bounds the sessionUpload bodies that are rewritten; larger
// bodies pass untouched (a sessionUpload object is a few hundred bytes).
const maxRewriteBody = 1 << 20

// isSessionUpload reports whether r is for Panopto's sessionUpload
// endpoint, in any casing: IIS matches paths case-insensitively, so
// /panopto/publicapi/rest/sessionupload is the same endpoint.
func isSessionUpload(r *http.Request) bool {
	return ascii.ContainsFold(r.URL.Path, "/PublicAPI/REST/sessionUpload")
}

func isJSON(h http.Header) bool {
	ct := h.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// rewriteUploadTarget replaces the origin from with to at the start of every
// "UploadTarget" string in a JSON document. It returns the document unchanged
// (and false) when it is not JSON or holds no such value.
func rewriteUploadTarget(body []byte, from, to string) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return body, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return body, false // trailing data: not one JSON document
	}
	changed := false
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				if s, ok := x.(string); ok && strings.EqualFold(k, "UploadTarget") && hasOriginPrefix(s, from) {
					t[k] = to + s[len(from):]
					changed = true
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		}
	}
	walk(doc)
	if !changed {
		return body, false
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return body, false
	}
	return bytes.TrimRight(out.Bytes(), "\n"), true
}

// hasOriginPrefix reports whether s is origin itself or origin followed by a
// path, query or fragment (so https://a.com does not match https://a.com.evil).
func hasOriginPrefix(s, origin string) bool {
	if !strings.HasPrefix(strings.ToLower(s), strings.ToLower(origin)) {
		return false
	}
	rest := s[len(origin):]
	return rest == "" || rest[0] == '/' || rest[0] == '?' || rest[0] == '#'
}

func upstreamOrigin(o *Options) string {
	return o.Upstream.Scheme + "://" + o.Upstream.Host
}

// readBounded reads all of rc if it is at most limit bytes. Otherwise it
// returns a reader that yields the same bytes as rc would have.
func readBounded(rc io.ReadCloser, limit int64) ([]byte, io.ReadCloser, bool) {
	var b bytes.Buffer
	n, err := io.CopyN(&b, rc, limit+1)
	if err != nil && err != io.EOF {
		return nil, readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), rc), rc}, false
	}
	if n > limit {
		return nil, readCloser{io.MultiReader(bytes.NewReader(b.Bytes()), rc), rc}, false
	}
	rc.Close()
	return b.Bytes(), nil, true
}

// rewriteRequestBody turns the sidecar's origin back into the upstream's in
// a sessionUpload object OnTrack sends back (PUT echoes the whole object).
func rewriteRequestBody(out *http.Request, o *Options) {
	if out.Body == nil || out.Body == http.NoBody || !isJSON(out.Header) {
		return
	}
	if out.ContentLength > maxRewriteBody {
		return
	}
	data, rest, ok := readBounded(out.Body, maxRewriteBody)
	if !ok {
		out.Body = rest
		return
	}
	nb, _ := rewriteUploadTarget(data, o.PublicURL, upstreamOrigin(o))
	out.Body = io.NopCloser(bytes.NewReader(nb))
	out.ContentLength = int64(len(nb))
	out.Header.Del("Transfer-Encoding")
	out.TransferEncoding = nil
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(nb)), nil }
}

// rewriteResponseBody turns the upstream's origin into the sidecar's in a
// sessionUpload response, so OnTrack uploads through the sidecar.
func rewriteResponseBody(resp *http.Response, o *Options) {
	if resp.Body == nil || !isJSON(resp.Header) || resp.Header.Get("Content-Encoding") != "" {
		return
	}
	if resp.ContentLength > maxRewriteBody {
		return
	}
	data, rest, ok := readBounded(resp.Body, maxRewriteBody)
	if !ok {
		resp.Body = rest
		return
	}
	nb, _ := rewriteUploadTarget(data, upstreamOrigin(o), o.PublicURL)
	resp.Body = io.NopCloser(bytes.NewReader(nb))
	resp.ContentLength = int64(len(nb))
	resp.Header.Set("Content-Length", strconv.Itoa(len(nb)))
	resp.Header.Del("Transfer-Encoding")
	resp.TransferEncoding = nil
}
