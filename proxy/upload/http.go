package upload

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on the query parameters.
const (
	maxNameLen        = 200
	maxTitleLen       = 500
	maxDescriptionLen = 5000
)

// ParseParams reads and checks the query of POST /-/uploads:
// folder_id (a GUID), name (a safe file name), optional title and
// description, and that a body is there. Nothing is sent anywhere.
func ParseParams(r *http.Request) (Params, *Error) {
	q := r.URL.Query()
	p := Params{
		FolderID:    strings.ToLower(strings.TrimSpace(q.Get("folder_id"))),
		Name:        q.Get("name"),
		Title:       q.Get("title"),
		Description: q.Get("description"),
		Size:        r.ContentLength,
	}
	bad := func(detail string) (Params, *Error) {
		return Params{}, fail(http.StatusBadRequest, "bad_request", detail, nil)
	}
	switch {
	case !IsGUID(p.FolderID):
		return bad("folder_id must be a GUID")
	case !SafeName(p.Name):
		return bad("name must be a file name: 1-200 bytes of UTF-8, no path separators, control characters or <>:\"|?*, not starting with a dot, and not " + manifestName)
	case len(p.Title) > maxTitleLen || !utf8.ValidString(p.Title):
		return bad("title must be UTF-8 of at most 500 bytes")
	case len(p.Description) > maxDescriptionLen || !utf8.ValidString(p.Description):
		return bad("description must be UTF-8 of at most 5000 bytes")
	case r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0:
		return bad("the body must be the video's bytes (Content-Length or chunked)")
	}
	return p, nil
}

// IsGUID reports whether v is 8-4-4-4-12 hex digits.
func IsGUID(v string) bool {
	if len(v) != 36 {
		return false
	}
	for i, c := range v {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}

// SafeName accepts a plain file name that is safe as an S3 key and in the
// manifest: no separators, no control or Windows-reserved characters, no
// dot segments or leading dot, no trailing dot or space.
func SafeName(n string) bool {
	if n == "" || len(n) > maxNameLen || !utf8.ValidString(n) || strings.HasPrefix(n, ".") ||
		strings.HasSuffix(n, ".") || strings.HasSuffix(n, " ") || strings.TrimSpace(n) == "" ||
		strings.EqualFold(n, manifestName) {
		return false
	}
	for _, c := range n {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) || strings.ContainsRune(`/\<>:"|?*%`, c) {
			return false
		}
	}
	return true
}

// ServeCreate answers POST /-/uploads once ParseParams accepted the request
// and tokens is the account's: 201 with the Result, or the Error's status.
func (u *Uploader) ServeCreate(w http.ResponseWriter, r *http.Request, tokens Tokens, p Params) {
	res, err := u.Create(r.Context(), tokens, p, r.Body)
	if err != nil {
		// The connection is not reused after a body we stopped reading.
		w.Header().Set("Connection", "close")
		WriteError(w, err.(*Error))
		return
	}
	writeJSON(w, http.StatusCreated, res)
}

// ServeGet answers GET /-/uploads/{id}.
func (u *Uploader) ServeGet(w http.ResponseWriter, r *http.Request, tokens Tokens, id string) {
	st, err := u.Get(r.Context(), tokens, id)
	if err != nil {
		e := err.(*Error)
		u.log.Warn("upload: status read failed", "id", id, "status", e.Status, "err", e.Err)
		WriteError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// WriteError answers e as JSON: error, detail, and for an upload that had
// begun at Panopto its id and what was cleaned up.
func WriteError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter.Seconds())))
	}
	writeJSON(w, e.Status, ErrorBody(e))
}

// ErrorBody is the JSON object WriteError answers for e.
func ErrorBody(e *Error) map[string]any {
	body := map[string]any{"error": e.Code, "detail": e.Detail}
	if e.ID != "" {
		body["id"] = e.ID
		body["multipart_aborted"] = e.Aborted
		body["session_cancelled"] = e.Cancelled
	}
	return body
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
