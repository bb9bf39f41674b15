package panoptofake

import (
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Seeded folder IDs, stable across runs so tests and the demo can name them.
const (
	FolderOnTrack  = "6f3c2a1e-7b4d-4c1a-9e2f-000000000001" // "OnTrack Uploads"
	FolderCOS10009 = "6f3c2a1e-7b4d-4c1a-9e2f-000000000002" // child of FolderOnTrack
	FolderSIT305   = "6f3c2a1e-7b4d-4c1a-9e2f-000000000003" // child of FolderOnTrack
	FolderStaff    = "6f3c2a1e-7b4d-4c1a-9e2f-000000000004" // "Staff Recordings"
)

type folder struct {
	id, name, description, parentID string
}

type session struct {
	id, name, description, folderID, createdBy string
	start                                      time.Time
	duration                                   float64
	processing                                 bool // created by an upload still processing: no Duration yet
}

func (s *Server) seed() {
	s.folders = []folder{
		{FolderOnTrack, "OnTrack Uploads", "Student submissions from OnTrack", ""},
		{FolderCOS10009, "COS10009 Introduction to Programming", "Trimester 1", FolderOnTrack},
		{FolderSIT305, "SIT305 Mobile Application Development", "Trimester 2", FolderOnTrack},
		{FolderStaff, "Staff Recordings", "", ""},
	}
	t0 := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	s.sessions = []session{
		{"8a1d0c52-3e4f-4b6a-8c7d-000000000011", "Week 1 Lecture", "Welcome", FolderCOS10009, "panopto-admin", t0, 3120.5, false},
		{"8a1d0c52-3e4f-4b6a-8c7d-000000000012", "Week 2 Lecture", "Control flow", FolderCOS10009, "panopto-admin", t0.Add(7 * 24 * time.Hour), 2998, false},
		{"8a1d0c52-3e4f-4b6a-8c7d-000000000013", "Induction", "", FolderStaff, "panopto-admin", t0.Add(-30 * 24 * time.Hour), 600, false},
	}
}

type apiHandler func(w http.ResponseWriter, r *http.Request, g *grant)

// api wraps a REST v1 handler: faults, then the bearer (401 when bad).
func (s *Server) api(h apiHandler) http.HandlerFunc { return s.bearer(h, false) }

// publicAPI wraps a PublicAPI handler: 401, or 403 with PublicAPI403.
func (s *Server) publicAPI(h apiHandler) http.HandlerFunc {
	return s.bearer(h, s.opts.PublicAPI403)
}

func (s *Server) bearer(h apiHandler, forbid bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.stats.APICalls++
		s.mu.Unlock()
		if f, ok := s.nextFault(&s.apiFaults); ok && s.serveFault(w, r, f) {
			return
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		var g *grant
		s.mu.Lock()
		if strings.EqualFold(scheme, "Bearer") {
			if a, ok := s.access[strings.TrimSpace(tok)]; ok && s.activeLocked(a) {
				g = a.g
			}
		}
		switch {
		case g == nil && forbid:
			s.stats.Forbidden++
		case g == nil:
			s.stats.Unauthorized++
		case !hasScope(g.scopes, "api"):
			s.stats.Forbidden++
		}
		s.mu.Unlock()
		if g == nil {
			drain(r)
			status := http.StatusUnauthorized
			if forbid {
				status = http.StatusForbidden
			}
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeJSON(w, status, map[string]string{"Message": "Authorization has been denied for this request."})
			return
		}
		if !hasScope(g.scopes, "api") {
			drain(r)
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="api"`)
			writeJSON(w, http.StatusForbidden, map[string]string{"Message": "The token lacks the api scope."})
			return
		}
		h(w, r, g)
	}
}

func hasScope(scopes []string, want string) bool {
	for _, s := range scopes {
		if s == want {
			return true
		}
	}
	return false
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"Message": msg})
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]string{"Message": "Not found."})
}

// page applies pageNumber (0-based) and pageSize (or maxNumberResults,
// default 50, at most 1000) to n items, returning the slice bounds.
func page(r *http.Request, n int) (lo, hi int, err error) {
	q := r.URL.Query()
	num, size := 0, 50
	if v := q.Get("pageNumber"); v != "" {
		if num, err = strconv.Atoi(v); err != nil || num < 0 {
			return 0, 0, errors.New("pageNumber must be a non-negative integer")
		}
	}
	sv := q.Get("pageSize")
	if sv == "" {
		sv = q.Get("maxNumberResults")
	}
	if sv != "" {
		if size, err = strconv.Atoi(sv); err != nil || size < 1 || size > 1000 {
			return 0, 0, errors.New("pageSize must be 1-1000")
		}
	}
	lo = min(num*size, n)
	return lo, min(lo+size, n), nil
}

func (s *Server) folderJSON(r *http.Request, f folder) map[string]any {
	o := s.origin(r)
	var parent any
	for _, p := range s.folders {
		if p.id == f.parentID && f.parentID != "" {
			parent = map[string]any{"Id": p.id, "Name": p.name}
		}
	}
	return map[string]any{
		"Id": f.id, "Name": f.name, "Description": f.description, "ParentFolder": parent,
		"Urls": map[string]any{
			"FolderUrl":        o + "/Panopto/Pages/Sessions/List.aspx#folderID=%22" + f.id + "%22",
			"EmbedUrl":         o + "/Panopto/Pages/Embed/EmbedFolder.aspx?id=" + f.id,
			"ShareSettingsUrl": o + "/Panopto/Pages/Sessions/List.aspx#folderID=%22" + f.id + "%22&folderSharing=true",
		},
	}
}

func (s *Server) sessionJSON(r *http.Request, x session) map[string]any {
	o := s.origin(r)
	var fname string
	for _, f := range s.folders {
		if f.id == x.folderID {
			fname = f.name
		}
	}
	var duration any = x.duration
	if x.processing {
		duration = nil
	}
	return map[string]any{
		"Id": x.id, "Name": x.name, "Description": x.description,
		"StartTime": x.start.UTC().Format(time.RFC3339), "Duration": duration,
		"CreatedBy":     map[string]any{"Id": nil, "Username": x.createdBy},
		"FolderDetails": map[string]any{"Id": x.folderID, "Name": fname},
		"Urls": map[string]any{
			"ViewerUrl":    o + "/Panopto/Pages/Viewer.aspx?id=" + x.id,
			"EmbedUrl":     o + "/Panopto/Pages/Embed.aspx?id=" + x.id,
			"ThumbnailUrl": o + "/Panopto/Services/FrameGrabber.svc/FrameRedirect?objectId=" + x.id + "&mode=Delivery",
		},
	}
}

func (s *Server) listFiltered(w http.ResponseWriter, r *http.Request, keep func(folder) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []map[string]any
	for _, f := range s.folders {
		if keep(f) {
			all = append(all, s.folderJSON(r, f))
		}
	}
	lo, hi, err := page(r, len(all))
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Results": append([]map[string]any{}, all[lo:hi]...)})
}

func (s *Server) listFolders(w http.ResponseWriter, r *http.Request, _ *grant) {
	s.listFiltered(w, r, func(folder) bool { return true })
}

func (s *Server) searchFolders(w http.ResponseWriter, r *http.Request, _ *grant) {
	q := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("searchQuery")))
	if q == "" {
		badRequest(w, "searchQuery is required.")
		return
	}
	s.listFiltered(w, r, func(f folder) bool { return strings.Contains(strings.ToLower(f.name), q) })
}

func (s *Server) folderChildren(w http.ResponseWriter, r *http.Request, _ *grant) {
	id := r.PathValue("id")
	root := id == "00000000-0000-0000-0000-000000000000"
	if !root && !s.folderExists(id) {
		notFound(w)
		return
	}
	s.listFiltered(w, r, func(f folder) bool { return f.parentID == id || root && f.parentID == "" })
}

func (s *Server) folderExists(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.folders {
		if strings.EqualFold(f.id, id) {
			return true
		}
	}
	return false
}

func (s *Server) getFolder(w http.ResponseWriter, r *http.Request, _ *grant) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.folders {
		if strings.EqualFold(f.id, id) {
			writeJSON(w, http.StatusOK, s.folderJSON(r, f))
			return
		}
	}
	notFound(w)
}

func (s *Server) folderSessions(w http.ResponseWriter, r *http.Request, _ *grant) {
	id := r.PathValue("id")
	if !s.folderExists(id) {
		notFound(w)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []map[string]any
	for _, x := range s.sessions {
		if strings.EqualFold(x.folderID, id) {
			all = append(all, s.sessionJSON(r, x))
		}
	}
	lo, hi, err := page(r, len(all))
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Results": append([]map[string]any{}, all[lo:hi]...)})
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request, _ *grant) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.sessions {
		if strings.EqualFold(x.id, id) {
			writeJSON(w, http.StatusOK, s.sessionJSON(r, x))
			return
		}
	}
	notFound(w)
}

// echo streams the request body back as it arrives (full duplex), so a
// proxy that buffers whole bodies shows up as a stall.
func (s *Server) echo(w http.ResponseWriter, r *http.Request, _ *grant) {
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// maxStream bounds /stream so a typo cannot run for hours.
const maxStream = 1 << 40

// stream writes ?bytes=N bytes of PatternReader data without allocating N.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, _ *grant) {
	n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
	if err != nil || n < 0 || n > maxStream {
		badRequest(w, "bytes must be an integer in [0, 2^40].")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.CopyBuffer(w, PatternReader(n), make([]byte, 32<<10))
}

// whoami tells which user's token arrived.
func (s *Server) whoami(w http.ResponseWriter, r *http.Request, g *grant) {
	writeJSON(w, http.StatusOK, map[string]any{
		"User": g.user, "GrantId": g.id, "GrantType": g.grantType,
		"ClientId": g.clientID, "Scope": strings.Join(g.scopes, " "),
	})
}

// PatternReader returns n bytes of deterministic data (byte i is i mod 251),
// the same data /Panopto/api/v1/stream serves. It is an io.ReadSeeker so it
// can stand in for a file in upload tests without holding n bytes.
func PatternReader(n int64) io.ReadSeeker { return &pattern{n: n} }

type pattern struct{ off, n int64 }

// patternTable holds 512 periods of the pattern: Read copies from it, so
// producing a GiB costs little even under the race detector.
var patternTable = func() []byte {
	b := make([]byte, 251*512)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rem := p.n - p.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	for n := 0; n < len(b); {
		start := (p.off + int64(n)) % 251
		n += copy(b[n:], patternTable[start:])
	}
	p.off += int64(len(b))
	return len(b), nil
}

// PatternETag is the S3 multipart ETag of PatternReader(n) uploaded in parts
// of partSize: the MD5 of the parts' MD5s, and the number of parts.
func PatternETag(n, partSize int64) string {
	var sums []byte
	r := PatternReader(n)
	parts := 0
	for off := int64(0); off < n; off += partSize {
		h := md5.New()
		_, _ = io.CopyN(h, r, min(partSize, n-off))
		sums = append(sums, h.Sum(nil)...)
		parts++
	}
	return fmt.Sprintf(`"%x-%d"`, md5.Sum(sums), parts)
}

func (p *pattern) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += p.off
	case io.SeekEnd:
		offset += p.n
	default:
		return 0, errors.New("pattern: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("pattern: negative position")
	}
	p.off = offset
	return offset, nil
}
