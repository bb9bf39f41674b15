package proxy

import (
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/upload"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// uploaders holds the upload engine for the options in force; a reload that
// changes the part size, concurrency, queue timeout or upstream gets a new
// one. Every engine takes its part buffers from the one budget.
type uploaders struct {
	cur    atomic.Pointer[uploaderFor]
	budget *upload.Budget // made by New; its limit follows the options
}

func newUploadBudget(m *Metrics, limit int64) *upload.Budget {
	return upload.NewBudget(upload.BudgetOptions{
		Limit:   limit,
		Observe: m.uploadBudget,
		// Buffers idle for a minute go back to the system at once: an idle
		// sidecar does not keep the memory of the last busy hour.
		Released: debug.FreeOSMemory,
	})
}

type uploaderFor struct {
	upstream     string
	partSize     int64
	concurrency  int
	queueTimeout time.Duration
	u            *upload.Uploader
}

func (h *Handler) uploader(o *Options) *upload.Uploader {
	want := uploaderFor{upstream: o.Upstream.String(), partSize: o.UploadPartSize, concurrency: o.UploadConcurrency, queueTimeout: o.UploadQueueTimeout}
	if c := h.ups.cur.Load(); c != nil && c.upstream == want.upstream && c.partSize == want.partSize &&
		c.concurrency == want.concurrency && c.queueTimeout == want.queueTimeout {
		return c.u
	}
	want.u = upload.New(upload.Options{
		Upstream:     o.Upstream,
		Transport:    h.deps.Transport,
		PartSize:     o.UploadPartSize,
		Concurrency:  o.UploadConcurrency,
		Logger:       h.log.With("component", "upload"),
		Hooks:        h.deps.Metrics.uploadHooks(),
		Now:          h.deps.Now,
		Budget:       h.ups.budget,
		QueueTimeout: o.UploadQueueTimeout,
	})
	h.ups.cur.Store(&want)
	return want.u
}

// uploadCreate serves POST /-/uploads: one video in one request, as the
// account named by the accounts header. The Idempotency-Key and the
// metadata are checked before anything is sent to Panopto (uploadwatch.go).
func (h *Handler) uploadCreate(w http.ResponseWriter, r *http.Request, o *Options) {
	h.observeUpload(w, func(w http.ResponseWriter) {
		p, perr := upload.ParseParams(r)
		if perr != nil {
			upload.WriteError(w, perr)
			return
		}
		in, bad := parseUploadInput(r)
		if bad != "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "detail": bad})
			return
		}
		if m, u := h.uploadAs(w, r, o); m != nil {
			p.Account = o.account(r)
			h.createWatched(w, r, m, u, p, in)
		}
	})
}

// uploadStatus serves GET /-/uploads/{id}: the watched upload as its
// record holds it, for the account that uploaded it; an upload with no
// record (made before uploads were watched, or deleted after
// uploads.retention) is read from Panopto as the account named by the
// accounts header, as it was before.
func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, o *Options) {
	h.observeUpload(w, func(w http.ResponseWriter) {
		id := r.PathValue("id")
		if !upload.IsGUID(id) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad_request", "detail": "the upload id must be a GUID"})
			return
		}
		if h.serveWatched(w, r, o, id) {
			return
		}
		if m, u := h.uploadAs(w, r, o); m != nil {
			u.ServeGet(w, r, m, id)
		}
	})
}

// observeUpload runs serve and counts its answer in the /-/uploads metrics.
func (h *Handler) observeUpload(w http.ResponseWriter, serve func(w http.ResponseWriter)) {
	start := h.deps.Now()
	rw := &recorder{ResponseWriter: w}
	defer func() { h.deps.Metrics.observe("/-/uploads", rw.code(), h.deps.Now().Sub(start)) }()
	serve(rw)
}

// uploadAs returns the manager of the account an upload request is for and
// the upload engine, or answers, as the proxy routes do, that the account
// is not connected and returns nil.
func (h *Handler) uploadAs(w http.ResponseWriter, r *http.Request, o *Options) (*token.Manager, *upload.Uploader) {
	account := o.account(r)
	m, err := h.deps.Accounts.Manager(r.Context(), account)
	if err != nil {
		notConnected(w, o, account)
		return nil, nil
	}
	if _, err := m.Token(r.Context()); err != nil {
		if r.Context().Err() == nil {
			notConnected(w, o, account)
		}
		return nil, nil
	}
	return m, h.uploader(o)
}
