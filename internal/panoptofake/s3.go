package panoptofake

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const (
	minPartSize   = 5 << 20  // S3: every part but the last
	maxPartSize   = 25 << 20 // Panopto's upload server: 5-25 MiB parts
	maxPartNumber = 10000
	smallObject   = 1 << 20 // objects up to this size are kept (manifests)
)

type multipartUpload struct {
	key   string
	parts map[int]*part
}

type part struct {
	size int64
	etag string // quoted
	md5  []byte
	data []byte // kept only when small
}

type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource"`
	RequestID string   `xml:"RequestId"`
}

func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(s3Error{Code: code, Message: msg, Resource: r.URL.Path, RequestID: w.Header().Get("x-amz-request-id")})
}

func writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(v)
}

// s3 serves /Panopto/Upload/{id}/{key...} with the subset of the S3 API an
// uploader uses. No bearer is expected here; one that arrives is an error.
func (s *Server) s3(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-amz-request-id", strings.ToUpper(newID(8)))
	s.mu.Lock()
	s.stats.UploadRequests++
	if scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
		s.stats.UploadBearer++
		s.mu.Unlock()
		drain(r)
		writeS3Error(w, r, http.StatusBadRequest, "InvalidArgument", "Bearer tokens are not accepted on upload targets.")
		return
	}
	auth := r.Header.Get("Authorization")
	if strings.HasPrefix(auth, "AWS ") {
		s.stats.UploadSigV2++
		if s.opts.S3SecretKey != "" && !checkSigV2(r, auth, s.opts.S3SecretKey) {
			s.stats.UploadBadSignature++
			s.mu.Unlock()
			drain(r)
			writeS3Error(w, r, http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
			return
		}
	}
	u, ok := s.uploads[strings.ToLower(r.PathValue("id"))]
	state := 0
	if ok {
		state = u.state
	}
	s.mu.Unlock()
	key := r.PathValue("key")
	switch {
	case !ok:
		drain(r)
		writeS3Error(w, r, http.StatusNotFound, "NoSuchBucket", "The upload target does not exist.")
		return
	case key == "":
		drain(r)
		writeS3Error(w, r, http.StatusBadRequest, "InvalidRequest", "An object key is required.")
		return
	case state != StateCreated && r.Method != http.MethodGet && r.Method != http.MethodHead:
		drain(r)
		writeS3Error(w, r, http.StatusForbidden, "AccessDenied", "The upload session is closed.")
		return
	}
	q := r.URL.Query()
	_, initiate := q["uploads"]
	uploadID := q.Get("uploadId")
	switch {
	case r.Method == http.MethodPost && initiate:
		s.s3Initiate(w, r, u, key)
	case r.Method == http.MethodPost && uploadID != "":
		s.s3Complete(w, r, u, key, uploadID)
	case r.Method == http.MethodPut && q.Get("partNumber") != "":
		s.s3Part(w, r, u, key, uploadID, q.Get("partNumber"))
	case r.Method == http.MethodPut && uploadID == "":
		if r.Header.Get("x-amz-copy-source") != "" {
			drain(r)
			writeS3Error(w, r, http.StatusNotImplemented, "NotImplemented", "Copy is not supported.")
			return
		}
		s.s3Put(w, r, u, key)
	case r.Method == http.MethodDelete && uploadID != "":
		s.s3Abort(w, r, u, key, uploadID)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && uploadID == "":
		s.s3Get(w, r, u, key)
	default:
		drain(r)
		writeS3Error(w, r, http.StatusMethodNotAllowed, "MethodNotAllowed", "The operation is not supported by the upload target.")
	}
}

func (s *Server) s3Initiate(w http.ResponseWriter, r *http.Request, u *upload, key string) {
	drain(r)
	id := newID(24)
	s.mu.Lock()
	u.multipart[id] = &multipartUpload{key: key, parts: map[int]*part{}}
	s.mu.Unlock()
	writeXML(w, struct {
		XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ InitiateMultipartUploadResult"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		UploadID string   `xml:"UploadId"`
	}{Bucket: "Panopto", Key: "Upload/" + u.id + "/" + key, UploadID: id})
}

func (s *Server) s3Part(w http.ResponseWriter, r *http.Request, u *upload, key, uploadID, num string) {
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > maxPartNumber {
		drain(r)
		writeS3Error(w, r, http.StatusBadRequest, "InvalidArgument", "Part number must be an integer between 1 and 10000.")
		return
	}
	s.mu.Lock()
	mu, ok := u.multipart[uploadID]
	s.mu.Unlock()
	if !ok || mu.key != key {
		drain(r)
		writeS3Error(w, r, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return
	}
	if r.ContentLength > maxPartSize {
		drain(r)
		writeS3Error(w, r, http.StatusBadRequest, "EntityTooLarge", "Parts may be at most 25 MiB.")
		return
	}
	b, ok := s.readBody(w, r)
	if !ok {
		return
	}
	p := &part{size: b.size, etag: `"` + hex.EncodeToString(b.md5) + `"`, md5: b.md5, data: b.data}
	s.mu.Lock()
	if _, still := u.multipart[uploadID]; still {
		mu.parts[n] = p
	}
	s.mu.Unlock()
	w.Header().Set("ETag", p.etag)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) s3Put(w http.ResponseWriter, r *http.Request, u *upload, key string) {
	b, ok := s.readBody(w, r)
	if !ok {
		return
	}
	o := &object{size: b.size, etag: `"` + hex.EncodeToString(b.md5) + `"`, data: b.data, modified: s.now()}
	s.mu.Lock()
	u.objects[key] = o
	s.mu.Unlock()
	w.Header().Set("ETag", o.etag)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) s3Abort(w http.ResponseWriter, r *http.Request, u *upload, key, uploadID string) {
	drain(r)
	s.mu.Lock()
	mu, ok := u.multipart[uploadID]
	if ok && mu.key == key {
		delete(u.multipart, uploadID)
		u.aborted++
	}
	s.mu.Unlock()
	if !ok || mu.key != key {
		writeS3Error(w, r, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type completeXML struct {
	XMLName xml.Name `xml:"CompleteMultipartUpload"`
	Parts   []struct {
		PartNumber int    `xml:"PartNumber"`
		ETag       string `xml:"ETag"`
	} `xml:"Part"`
}

func (s *Server) s3Complete(w http.ResponseWriter, r *http.Request, u *upload, key, uploadID string) {
	var req completeXML
	if err := xml.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Parts) == 0 {
		drain(r)
		writeS3Error(w, r, http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mu, ok := u.multipart[uploadID]
	if !ok || mu.key != key {
		writeS3Error(w, r, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return
	}
	sum := md5.New()
	var size int64
	var sizes []int64
	var data []byte
	for i := 1; i < len(req.Parts); i++ {
		if req.Parts[i].PartNumber <= req.Parts[i-1].PartNumber {
			writeS3Error(w, r, http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
			return
		}
	}
	for i, rp := range req.Parts {
		p, ok := mu.parts[rp.PartNumber]
		if !ok || strings.Trim(rp.ETag, `" `) != strings.Trim(p.etag, `"`) {
			writeS3Error(w, r, http.StatusBadRequest, "InvalidPart",
				fmt.Sprintf("Part %d could not be found or its ETag does not match.", rp.PartNumber))
			return
		}
		if i < len(req.Parts)-1 && p.size < minPartSize {
			writeS3Error(w, r, http.StatusBadRequest, "EntityTooSmall",
				fmt.Sprintf("Part %d is smaller than the minimum allowed size.", rp.PartNumber))
			return
		}
		sum.Write(p.md5)
		size += p.size
		sizes = append(sizes, p.size)
		if len(req.Parts) == 1 {
			data = p.data
		}
	}
	etag := fmt.Sprintf(`"%x-%d"`, sum.Sum(nil), len(req.Parts))
	u.objects[key] = &object{size: size, etag: etag, partSizes: sizes, data: data, modified: s.now()}
	delete(u.multipart, uploadID)
	writeXML(w, struct {
		XMLName  xml.Name `xml:"http://s3.amazonaws.com/doc/2006-03-01/ CompleteMultipartUploadResult"`
		Location string   `xml:"Location"`
		Bucket   string   `xml:"Bucket"`
		Key      string   `xml:"Key"`
		ETag     string   `xml:"ETag"`
	}{Location: u.target + "/" + key, Bucket: "Panopto", Key: "Upload/" + u.id + "/" + key, ETag: etag})
}

func (s *Server) s3Get(w http.ResponseWriter, r *http.Request, u *upload, key string) {
	s.mu.Lock()
	o, ok := u.objects[key]
	s.mu.Unlock()
	if !ok {
		writeS3Error(w, r, http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
		return
	}
	if r.Method == http.MethodGet && o.data == nil {
		writeS3Error(w, r, http.StatusNotImplemented, "NotImplemented", "The upload target keeps no media bytes; use HEAD.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(o.size, 10))
	h.Set("ETag", o.etag)
	h.Set("Last-Modified", o.modified.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(o.data)
	}
}

// body is what readBody learned from a streamed payload.
type body struct {
	size int64
	md5  []byte
	data []byte // nil unless size <= smallObject
}

// readBody streams the payload and checks its length, Content-MD5, a hex
// x-amz-content-sha256 and any x-amz-checksum-* header. Like Panopto's upload
// server it takes plain bodies only: aws-chunked framing (STREAMING-…
// payloads, x-amz-decoded-content-length) and trailers are refused. It
// answers the S3 error itself when it returns false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body, bool) {
	h := r.Header
	var src io.Reader = r.Body
	want := r.ContentLength
	sha := h.Get("x-amz-content-sha256")
	if strings.Contains(strings.ToLower(h.Get("Content-Encoding")), "aws-chunked") || strings.HasPrefix(sha, "STREAMING-") ||
		h.Get("x-amz-trailer") != "" || h.Get("x-amz-decoded-content-length") != "" {
		s.mu.Lock()
		s.stats.UploadRefused++
		s.mu.Unlock()
		// Read the refused part to its end (parts are at most 25 MiB), so
		// the client, still sending, reads the error instead of a reset.
		_, _ = io.CopyN(io.Discard, r.Body, maxPartSize+1<<20)
		writeS3Error(w, r, http.StatusBadRequest, "NotImplemented", "aws-chunked bodies and trailers are not supported by this upload server.")
		return body{}, false
	}
	if want < 0 {
		drain(r)
		writeS3Error(w, r, http.StatusLengthRequired, "MissingContentLength", "You must provide the Content-Length HTTP header.")
		return body{}, false
	}

	m := md5.New()
	ws := []io.Writer{m}
	checks := map[string]hash.Hash{}
	for _, alg := range []string{"crc32", "crc32c", "crc64nvme", "sha1", "sha256"} {
		if h.Get("x-amz-checksum-"+alg) != "" {
			checks[alg] = newChecksum(alg)
			ws = append(ws, checks[alg])
		}
	}
	var shaSum hash.Hash
	if len(sha) == 64 {
		shaSum = sha256.New()
		ws = append(ws, shaSum)
	}
	keep := &capBuffer{max: smallObject}
	ws = append(ws, keep)
	n, err := io.CopyBuffer(io.MultiWriter(ws...), src, make([]byte, 64<<10))
	if err != nil {
		writeS3Error(w, r, http.StatusBadRequest, "IncompleteBody", "The request body could not be read completely.")
		return body{}, false
	}
	if n != want {
		writeS3Error(w, r, http.StatusBadRequest, "IncompleteBody", fmt.Sprintf("The body was %d bytes, not the %d declared.", n, want))
		return body{}, false
	}
	sum := m.Sum(nil)
	if v := h.Get("Content-MD5"); v != "" && v != base64.StdEncoding.EncodeToString(sum) {
		writeS3Error(w, r, http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
		return body{}, false
	}
	if shaSum != nil && !strings.EqualFold(sha, hex.EncodeToString(shaSum.Sum(nil))) {
		writeS3Error(w, r, http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
		return body{}, false
	}
	for alg, c := range checks {
		if v := h.Get("x-amz-checksum-" + alg); v != base64.StdEncoding.EncodeToString(c.Sum(nil)) {
			writeS3Error(w, r, http.StatusBadRequest, "BadDigest", "The "+alg+" you specified did not match the calculated checksum.")
			return body{}, false
		}
	}
	b := body{size: n, md5: sum}
	if !keep.over {
		b.data = keep.buf.Bytes()
		if b.data == nil {
			b.data = []byte{}
		}
	}
	return b, true
}

// crc64NVME is CRC-64/NVME, the polynomial S3 calls CRC64NVME (reversed form).
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

func newChecksum(alg string) hash.Hash {
	switch alg {
	case "crc32":
		return crc32.NewIEEE()
	case "crc32c":
		return crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "crc64nvme":
		return crc64.New(crc64NVME)
	case "sha1":
		return sha1.New()
	default:
		return sha256.New()
	}
}

// capBuffer keeps what is written until it exceeds max, then drops it all.
type capBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if !c.over {
		if c.buf.Len()+len(p) > c.max {
			c.over = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}
