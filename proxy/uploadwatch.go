package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/upload"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/watch"
)

// Watcher follows uploads after Panopto accepted them and keeps the
// Idempotency-Keys; *watch.Watcher is one.
type Watcher interface {
	Claim(ctx context.Context, account, key string) (watch.Claimed, error)
	Start(ctx context.Context, u watch.Upload) error
	Get(ctx context.Context, id string) (watch.Upload, bool, error)
}

var _ Watcher = (*watch.Watcher)(nil)

// Request headers of POST /-/uploads.
const (
	idempotencyHeader = "Idempotency-Key"
	metadataHeader    = "X-Upload-Metadata"
)

// uploadInput is what POST /-/uploads takes besides upload.Params.
type uploadInput struct {
	key      string // "" when the request has none
	metadata json.RawMessage
}

// parseUploadInput checks the Idempotency-Key and the metadata (query
// parameter or header, not both); a non-empty detail is the 400's.
func parseUploadInput(r *http.Request) (uploadInput, string) {
	var in uploadInput
	if vs, ok := r.Header[idempotencyHeader]; ok {
		if len(vs) != 1 {
			return in, "send one Idempotency-Key"
		}
		if err := watch.ValidKey(vs[0]); err != nil {
			return in, err.Error()
		}
		in.key = vs[0]
	}
	q, hasQ := r.URL.Query()["metadata"]
	hv, hasH := r.Header[metadataHeader]
	var raw string
	switch {
	case hasQ && hasH, len(q) > 1, len(hv) > 1:
		return in, "send the metadata once: the metadata query parameter or the X-Upload-Metadata header"
	case hasQ:
		raw = q[0]
	case hasH:
		raw = hv[0]
	}
	md, err := watch.Metadata(raw)
	if err != nil {
		return in, err.Error()
	}
	in.metadata = md
	return in, ""
}

// createWatched runs the upload under its Idempotency-Key, if it has one,
// starts watching it once Panopto accepted it, and answers.
func (h *Handler) createWatched(w http.ResponseWriter, r *http.Request, m *token.Manager, u *upload.Uploader, p upload.Params, in uploadInput) {
	wa := h.deps.Watcher
	var key *watch.Key
	if in.key != "" && wa != nil {
		c, err := wa.Claim(r.Context(), p.Account, in.key)
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			h.log.Error("upload: idempotency key not claimed", "account", p.Account, "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "store_unavailable",
				"detail": "the Idempotency-Key could not be checked in the token store; nothing was sent to Panopto; try again"})
			return
		}
		switch c.State {
		case watch.ClaimInProgress:
			body := map[string]string{"error": "upload_in_progress", "detail": "an upload with this Idempotency-Key is still running"}
			if c.ID != "" {
				body["id"] = c.ID
			}
			writeJSON(w, http.StatusConflict, body)
			return
		case watch.ClaimDone:
			writeRaw(w, c.Status, c.Body)
			return
		}
		key = c.Key
		defer func() {
			// Whatever happened, the key must not stay claimed.
			if err := key.Finish(context.WithoutCancel(r.Context()), http.StatusInternalServerError, []byte(`{"error":"internal"}`)); err == nil {
				h.log.Error("upload: idempotency key finished without an answer", "account", p.Account)
			}
		}()
		p.Created = func(id string) {
			if err := key.SetUpload(r.Context(), id); err != nil {
				h.log.Warn("upload: idempotency key: upload id not recorded", "id", id, "err", err)
			}
		}
	}
	status, body, retryAfter := h.runUpload(r, m, u, p, in)
	b, err := json.Marshal(body)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal"}`)
	}
	if key != nil {
		if err := key.Finish(context.WithoutCancel(r.Context()), status, b); err != nil {
			h.log.Warn("upload: idempotency key: answer not recorded", "account", p.Account, "err", err)
		}
	}
	if status != http.StatusCreated {
		// The connection is not reused after a body we stopped reading.
		w.Header().Set("Connection", "close")
	}
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	writeRaw(w, status, b)
}

// runUpload uploads the body and, once Panopto accepted it, starts its
// watch; it returns the answer.
func (h *Handler) runUpload(r *http.Request, m *token.Manager, u *upload.Uploader, p upload.Params, in uploadInput) (status int, body any, retryAfter int) {
	res, err := u.Create(r.Context(), m, p, r.Body)
	if err != nil {
		var e *upload.Error
		if !errors.As(err, &e) {
			return http.StatusInternalServerError, map[string]string{"error": "internal"}, 0
		}
		return e.Status, upload.ErrorBody(e), int(e.RetryAfter.Seconds())
	}
	if wa := h.deps.Watcher; wa != nil {
		up := watch.Upload{ID: res.ID, Account: p.Account, FolderID: res.FolderID, Name: res.Name, Bytes: res.Bytes, Metadata: in.metadata}
		if err := wa.Start(r.Context(), up); err != nil {
			// Panopto has the video either way; GET /-/uploads/{id}
			// reads it from Panopto then.
			h.log.Error("upload: not watched", "id", res.ID, "account", p.Account, "err", err)
		}
	}
	return http.StatusCreated, res, 0
}

// serveWatched answers GET /-/uploads/{id} from the upload's watch record
// and reports whether it did: false when there is none (or no watcher, or
// the record could not be read), so that Panopto is asked.
func (h *Handler) serveWatched(w http.ResponseWriter, r *http.Request, o *Options, id string) bool {
	wa := h.deps.Watcher
	if wa == nil {
		return false
	}
	up, ok, err := wa.Get(r.Context(), id)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "upload: watch record not read; asking Panopto",
			slog.String("id", id), slog.Any("err", err))
		return false
	}
	if !ok {
		return false
	}
	if up.Account != o.account(r) {
		// Another account's upload: answered as one that does not exist.
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "detail": "no upload with this id for this account"})
		return true
	}
	writeJSON(w, http.StatusOK, up)
	return true
}

func writeRaw(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}
