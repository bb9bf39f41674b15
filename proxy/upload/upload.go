// Package upload uploads a video to Panopto in one call: it creates the
// sessionUpload, streams the bytes into S3 multipart parts at the upload
// target, uploads a generated manifest, and hands the session over for
// processing (State=1). Memory is bounded by one Budget shared by every
// upload: at most concurrency+1 part buffers per upload, whatever the
// video's size, and never more than the budget's limit in all.
//
// PublicAPI calls carry the account's bearer (refreshed once on 401/403,
// retried after Retry-After on 429/503); S3 calls carry none and are signed
// with S3 signature version 2 and dummy keys, as Panopto's own sample does.
// Everything goes to the configured upstream only.
package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Part sizes Panopto's upload server takes.
const (
	MinPartSize     = 5 << 20
	MaxPartSize     = 25 << 20
	DefaultPartSize = 16 << 20
	// DefaultConcurrency parts are in flight at once: with 16 MiB parts
	// three buffers (two sending, one filling) stay far below 96 MiB.
	DefaultConcurrency = 2
	maxParts           = 10000
)

// Tokens is an account's token source; *token.Manager satisfies it.
type Tokens interface {
	Token(ctx context.Context) (*token.Grant, error)
	ForceRefresh(ctx context.Context, refused *token.Grant) (*token.Grant, error)
	// ClaimForbiddenRefresh reports whether a 403 to refused should force
	// a refresh (see token.Manager).
	ClaimForbiddenRefresh(refused *token.Grant) bool
}

var _ Tokens = (*token.Manager)(nil)

// Hooks count what happens; each may be nil.
type Hooks struct {
	Started   func()
	Completed func()
	Failed    func(reason string)
	Bytes     func(n int64) // bytes accepted by the upload target
	Busy      func()        // an upload refused as uploads_busy
}

// Options configure an Uploader.
type Options struct {
	Upstream    *url.URL          // scheme://host[:port]: every call goes there
	Transport   http.RoundTripper // to the upstream
	PartSize    int64             // default DefaultPartSize; 5-25 MiB
	Concurrency int               // parts in flight, default DefaultConcurrency
	Logger      *slog.Logger
	Hooks       Hooks
	Now         func() time.Time
	// PartAttempts is how often a part is tried (default 3).
	PartAttempts int
	// MaxRetryAfter bounds a wait asked for by Retry-After (default 30s).
	MaxRetryAfter time.Duration
	// CleanupTimeout bounds aborting and cancelling after a failure (default 30s).
	CleanupTimeout time.Duration
	// AccessKey and SecretKey are the dummy S3 keys (default "dummy").
	AccessKey, SecretKey string
	// Budget is where part buffers come from; share one between Uploaders
	// (default: a budget of DefaultMemoryLimit of its own).
	Budget *Budget
	// QueueTimeout bounds an upload's wait for its first part buffer
	// (default DefaultQueueTimeout).
	QueueTimeout time.Duration
}

// Uploader runs uploads. It is safe for concurrent use.
type Uploader struct {
	o   Options
	c   *http.Client
	log *slog.Logger
}

// New returns an Uploader with defaults filled in.
func New(o Options) *Uploader {
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	o.PartSize = min(max(o.PartSize, MinPartSize), MaxPartSize)
	if o.Concurrency < 1 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transport == nil {
		o.Transport = http.DefaultTransport
	}
	if o.PartAttempts < 1 {
		o.PartAttempts = 3
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 30 * time.Second
	}
	if o.CleanupTimeout <= 0 {
		o.CleanupTimeout = 30 * time.Second
	}
	if o.AccessKey == "" {
		o.AccessKey, o.SecretKey = "dummy", "dummy"
	}
	if o.Budget == nil {
		o.Budget = NewBudget(BudgetOptions{})
	}
	if o.QueueTimeout <= 0 {
		o.QueueTimeout = DefaultQueueTimeout
	}
	return &Uploader{
		o:   o,
		log: o.Logger,
		c: &http.Client{Transport: o.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // only the upstream, only where we send it
		}},
	}
}

// PartSize and Concurrency are the settings in force.
func (u *Uploader) PartSize() int64  { return u.o.PartSize }
func (u *Uploader) Concurrency() int { return u.o.Concurrency }

// Params describe one upload. Check validates them.
type Params struct {
	FolderID    string
	Name        string // the file's name at Panopto (the manifest's File)
	Title       string // default Name
	Description string
	Account     string // for the log only
	// Size is the body's length, or -1 when unknown (chunked).
	Size int64
	// Created, if set, is called with the sessionUpload's id as soon as
	// Panopto has created it, before the bytes are sent (an idempotency
	// key records it then).
	Created func(id string)
}

// Result is what POST /-/uploads answers.
type Result struct {
	ID       string `json:"id"`
	State    int    `json:"state"`
	FolderID string `json:"folder_id"`
	Name     string `json:"name"`
	Bytes    int64  `json:"bytes"`
}

// Status is what GET /-/uploads/{id} answers.
type Status struct {
	ID        string `json:"id"`
	State     int    `json:"state"`
	StateName string `json:"state_name"`
	SessionID string `json:"session_id"`
	Message   string `json:"message"`
}

// Error is a failed upload: the status and code to answer, what was cleaned
// up at Panopto, and the cause (for the log; never sent to the client).
type Error struct {
	Status     int           // HTTP status to answer
	Code       string        // short machine-readable reason
	Detail     string        // safe to show the client
	ID         string        // the sessionUpload, if one was created
	Aborted    bool          // the multipart upload was aborted
	Cancelled  bool          // the sessionUpload was cancelled
	RetryAfter time.Duration // answered as Retry-After when set
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "upload: " + e.Code + ": " + e.Err.Error()
	}
	return "upload: " + e.Code + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

func fail(status int, code, detail string, err error) *Error {
	return &Error{Status: status, Code: code, Detail: detail, Err: err}
}

// upstreamError describes an answer from Panopto that ends the upload.
type upstreamError struct {
	op     string
	status int
	code   string // S3 error code, when there is one
}

func (e *upstreamError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%s: status %d (%s)", e.op, e.status, e.code)
	}
	return fmt.Sprintf("%s: status %d", e.op, e.status)
}

// classify turns a failure during an upload into the client's answer.
func classify(ctx context.Context, err error) *Error {
	var ue *Error
	if errors.As(err, &ue) {
		return ue
	}
	var be *bodyError
	if errors.As(err, &be) {
		return fail(http.StatusBadRequest, "body_incomplete", "the request body broke off before its end; nothing was kept at Panopto", err)
	}
	if ctx.Err() != nil {
		return fail(499, "client_gone", "the client went away; nothing was kept at Panopto", err)
	}
	var up *upstreamError
	if errors.As(err, &up) {
		switch {
		case up.status == http.StatusTooManyRequests:
			return fail(http.StatusServiceUnavailable, "panopto_throttled", "Panopto kept answering 429; try again later", err)
		case up.status == http.StatusUnauthorized || up.status == http.StatusForbidden:
			return fail(http.StatusForbidden, "panopto_refused", fmt.Sprintf("Panopto refused the request (%d)", up.status), err)
		case up.status == http.StatusNotFound || up.status == http.StatusBadRequest:
			return fail(up.status, "panopto_rejected", fmt.Sprintf("Panopto rejected the request (%d)", up.status), err)
		}
	}
	return fail(http.StatusBadGateway, "upstream_failed", "Panopto's API or upload server failed", err)
}

// bodyError is a failure reading the client's body.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// busyRetryAfter is the Retry-After of an upload refused as uploads_busy.
const busyRetryAfter = time.Minute

// admit waits for the upload's first part buffer, which it keeps to the
// end. Nothing exists at Panopto yet, so a refusal leaves nothing to cancel.
func (u *Uploader) admit(ctx context.Context) (*share, []byte, *Error) {
	first, err := u.o.Budget.Admit(ctx, u.o.PartSize, u.o.QueueTimeout)
	switch {
	case err == nil:
		return u.o.Budget.newShare(u.o.PartSize, u.o.Concurrency+1), first, nil
	case ctx.Err() != nil:
		return nil, nil, fail(499, "client_gone", "the client went away while the upload waited for memory; nothing was created at Panopto", err)
	}
	e := fail(http.StatusServiceUnavailable, "uploads_busy",
		fmt.Sprintf("every upload buffer stayed taken for %s; nothing was created at Panopto; try again later", u.o.QueueTimeout), err)
	e.RetryAfter = busyRetryAfter
	if u.o.Hooks.Busy != nil {
		u.o.Hooks.Busy()
	}
	return nil, nil, e
}

// Create uploads body as one video. The first part is read before anything
// is created at Panopto, so an empty or broken body creates nothing. On any
// failure the multipart upload is aborted and the sessionUpload cancelled.
func (u *Uploader) Create(ctx context.Context, tokens Tokens, p Params, body io.Reader) (res Result, err error) {
	start := u.o.Now()
	if p.Title == "" {
		p.Title = p.Name
	}
	var sent int64
	var id string
	defer func() {
		attrs := []slog.Attr{
			slog.String("id", id), slog.String("account", p.Account), slog.Int64("bytes", sent),
			slog.Duration("dur", u.o.Now().Sub(start)),
		}
		if err == nil {
			attrs = append(attrs, slog.String("result", "completed"), slog.Int("status", http.StatusCreated))
			u.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "upload", attrs...)
			return
		}
		e := err.(*Error)
		attrs = append(attrs, slog.String("result", "failed"), slog.Int("status", e.Status), slog.String("reason", e.Code),
			slog.Bool("aborted", e.Aborted), slog.Bool("cancelled", e.Cancelled), slog.Any("err", e.Err))
		u.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn, "upload", attrs...)
	}()

	if p.Size > u.o.PartSize*maxParts {
		return Result{}, fail(http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("at most %d bytes fit in %d parts of %d bytes", u.o.PartSize*maxParts, maxParts, u.o.PartSize), nil)
	}
	sh, first, aerr := u.admit(ctx)
	if aerr != nil {
		return Result{}, aerr
	}
	defer sh.close()
	n, rerr := fill(body, first)
	if rerr != nil && rerr != io.EOF {
		sh.put(first)
		return Result{}, fail(http.StatusBadRequest, "body_incomplete", "the request body broke off; nothing was created at Panopto", rerr)
	}
	if n == 0 {
		sh.put(first)
		return Result{}, fail(http.StatusBadRequest, "empty_body", "the request has no body; send the video's bytes", nil)
	}
	call(u.o.Hooks.Started)

	s, err := u.createSession(ctx, tokens, p.FolderID)
	if err != nil {
		sh.put(first)
		e := classify(ctx, err)
		u.failed(e)
		return Result{}, e
	}
	id = s.ID
	if p.Created != nil {
		p.Created(id)
	}
	up := &s3Upload{u: u, base: s.targetPath, key: p.Name}
	firstDone := rerr != nil // the whole body fit in the first buffer
	total, err := u.stream(ctx, sh, up, first[:n], firstDone, body, &sent)
	sh.close() // every part is sent: the buffers go to the next upload
	if err == nil && p.Size >= 0 && total != p.Size {
		err = &bodyError{fmt.Errorf("got %d bytes of the %d declared", total, p.Size)}
	}
	if err == nil {
		err = up.putObject(ctx, manifestName, "text/xml", manifest(p.Title, p.Description, p.Name, u.o.Now()))
	}
	if err == nil {
		err = u.process(ctx, tokens, s)
	}
	if err != nil {
		e := classify(ctx, err)
		e.ID = id
		e.Aborted, e.Cancelled = u.cleanup(ctx, tokens, s, up)
		u.failed(e)
		return Result{}, e
	}
	call(u.o.Hooks.Completed)
	return Result{ID: s.ID, State: 1, FolderID: p.FolderID, Name: p.Name, Bytes: total}, nil
}

func call(f func()) {
	if f != nil {
		f()
	}
}

func (u *Uploader) failed(e *Error) {
	if u.o.Hooks.Failed != nil {
		u.o.Hooks.Failed(e.Code)
	}
}

// cleanup aborts the multipart upload and cancels the sessionUpload, on a
// context of its own: the request's may be gone.
func (u *Uploader) cleanup(ctx context.Context, tokens Tokens, s *session, up *s3Upload) (aborted, cancelled bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.o.CleanupTimeout)
	defer cancel()
	aborted = true
	if up.uploadID != "" {
		if err := up.abort(ctx); err != nil {
			aborted = false
			u.log.Warn("upload: abort multipart upload failed", "id", s.ID, "err", err)
		}
	}
	cancelled = true
	if err := u.cancel(ctx, tokens, s); err != nil {
		cancelled = false
		u.log.Warn("upload: cancel sessionUpload failed", "id", s.ID, "err", err)
	}
	return aborted, cancelled
}
