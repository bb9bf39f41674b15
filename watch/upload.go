// Package watch follows an upload from the moment Panopto accepted it
// (State=1) to a final state, and tells OnTrack: it polls Panopto as the
// upload's account with backoff, reads the session once Panopto names it,
// and delivers signed webhooks (package webhook) in order, at least once.
//
// Every upload is one record in the token store (key "upload/<id>"), so
// watches survive restarts and are shared by replicas: a replica takes a
// record through its lease (holder and until, written by compare-and-swap)
// and renews it at every step; when a replica dies its lease runs out and
// another replica, or the same one restarted, carries on. The record holds
// the upload as GET /-/uploads/{id} shows it and the ordered queue of
// webhook messages not yet delivered; only the head of the queue is
// attempted, so the events of one upload arrive in order. While the
// upload needs work, a marker ("watch/<id>") says so; replicas list the
// markers only, so the work of watching does not grow with past uploads.
// A finished upload's record stays for Get until Options.Retention has
// passed, and a sweep on one replica deletes it then (see Sweep).
//
// The package also keeps Idempotency-Key records ("idem/<account>/<hash>"),
// see Claim.
package watch

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// Panopto's sessionUpload states.
const (
	StateUploading       = 0
	StateUploadComplete  = 1
	StateUploadCancelled = 2
	StateProcessing      = 3
	StateComplete        = 4
	StateProcessingError = 5
	StateDeletingFiles   = 6
	StateDeleted         = 7
	StateDeletingError   = 8
)

// StateNames are Panopto's names of the states.
var StateNames = map[int]string{
	0: "Uploading", 1: "UploadComplete", 2: "UploadCancelled", 3: "Processing", 4: "Complete",
	5: "ProcessingError", 6: "DeletingFiles", 7: "Deleted", 8: "DeletingError",
}

// Final reports whether state ends an upload: 4 Complete, or 2, 5, 7, 8.
func Final(state int) bool {
	switch state {
	case StateUploadCancelled, StateComplete, StateProcessingError, StateDeleted, StateDeletingError:
		return true
	}
	return false
}

// Upload is an upload as GET /-/uploads/{id} answers it and as every
// webhook's data carries it.
type Upload struct {
	ID        string   `json:"id"`
	Account   string   `json:"account"`
	State     int      `json:"state"`
	StateName string   `json:"state_name"`
	FolderID  string   `json:"folder_id"`
	Name      string   `json:"name"`
	Bytes     int64    `json:"bytes"`
	Session   *Session `json:"session"` // null until Panopto names the session
	Message   string   `json:"message"` // Panopto's, when processing failed
	// Metadata is the caller's JSON object, stored and echoed, never
	// interpreted; null when none was given.
	Metadata json.RawMessage `json:"metadata"`
}

// Session is the Panopto session an upload became. Fields Panopto did not
// send are left out.
type Session struct {
	ID           string   `json:"id"`
	Name         string   `json:"name,omitempty"`
	ViewerURL    string   `json:"viewer_url,omitempty"`
	EmbedURL     string   `json:"embed_url,omitempty"`
	ThumbnailURL string   `json:"thumbnail_url,omitempty"`
	Duration     *float64 `json:"duration,omitempty"` // seconds; null while processing
}

// Status is what Panopto says of a sessionUpload.
type Status struct {
	State     int
	SessionID string // "" until processing has created the session
	Message   string // why processing failed, if it did
}

// record is the stored form of a watched upload (token.Record.Data).
type record struct {
	Upload Upload    `json:"upload"`
	Start  time.Time `json:"created"`
	Update time.Time `json:"updated"`
	// Until ends the watch: an upload not final by then is left as it is.
	Until time.Time `json:"watch_until"`
	// NextPoll is when Panopto is asked next; Polls counts the polls made.
	NextPoll time.Time `json:"next_poll,omitzero"`
	Polls    int       `json:"polls"`
	// Watching is false once the upload is final (and its session read) or
	// the watch ran out.
	Watching bool `json:"watching"`
	// Seen records the events enqueued, so each is sent once per upload.
	Processing bool `json:"processing_sent,omitempty"`
	// Queue holds the webhook messages not yet delivered, oldest first.
	Queue []pending `json:"queue,omitempty"`
}

// pending is one undelivered webhook message.
type pending struct {
	Message  webhook.Message `json:"message"`
	Attempts int             `json:"attempts"`
	Next     time.Time       `json:"next"`
}

// due is when the record next needs work; ok is false when it never does.
func (r *record) due() (time.Time, bool) {
	var at time.Time
	ok := false
	if r.Watching {
		at, ok = r.NextPoll, true
	}
	if len(r.Queue) > 0 {
		if n := r.Queue[0].Next; !ok || n.Before(at) {
			at = n
		}
		ok = true
	}
	return at, ok
}

// keyPrefix starts every upload record's key.
const keyPrefix = "upload/"

// uploadKey is the store key of upload id. Panopto's ids are GUIDs, which
// it takes in any case: GET /-/uploads/{ID} finds the watch of {id}.
func uploadKey(id string) string { return keyPrefix + strings.ToLower(id) }
