package proxy

import (
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/proxy/upload"
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

// uploads serves POST /-/uploads (one video in one request) and
// GET /-/uploads/{id} (its state at Panopto), as the account named by the
// accounts header, with the same answer as the proxy routes when that
// account is not connected.
func (h *Handler) uploads(w http.ResponseWriter, r *http.Request, o *Options) {
	start := h.deps.Now()
	rw := &recorder{ResponseWriter: w}
	defer func() { h.deps.Metrics.observe("/-/uploads", rw.code(), h.deps.Now().Sub(start)) }()

	id, isGet := strings.CutPrefix(r.URL.Path, "/-/uploads/")
	var p upload.Params
	switch {
	case r.URL.Path == "/-/uploads" && r.Method == http.MethodPost:
		var perr *upload.Error
		if p, perr = upload.ParseParams(r); perr != nil {
			upload.WriteError(rw, perr)
			return
		}
	case isGet && r.Method == http.MethodGet:
		if !upload.IsGUID(id) {
			writeJSON(rw, http.StatusBadRequest, map[string]string{"error": "bad_request", "detail": "the upload id must be a GUID"})
			return
		}
	case r.URL.Path == "/-/uploads" || isGet:
		w.Header().Set("Allow", map[bool]string{true: "GET", false: "POST"}[isGet])
		writeJSON(rw, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	default:
		writeJSON(rw, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}

	account := o.account(r)
	m, err := h.deps.Accounts.Manager(r.Context(), account)
	if err != nil {
		notConnected(rw, o, account)
		return
	}
	if _, err := m.Token(r.Context()); err != nil {
		if r.Context().Err() == nil {
			notConnected(rw, o, account)
		}
		return
	}
	u := h.uploader(o)
	if isGet {
		u.ServeGet(rw, r, m, id)
		return
	}
	p.Account = account
	u.ServeCreate(rw, r, m, p)
}
