// Package webhook tells OnTrack what happened to an upload: events POSTed as
// JSON to one URL, signed per the Standard Webhooks specification
// (https://www.standardwebhooks.com) with its own Go library, so OnTrack
// verifies them with the standardwebhooks gem as it verifies Turnitin's.
//
// A Sender makes one delivery attempt of a Message. Retrying, ordering and
// keeping undelivered messages across restarts belong to the caller; Retry
// is the schedule it waits by. A Message keeps its ID (the webhook-id
// header) across attempts, so a receiver can drop duplicates: delivery is at
// least once.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/doubtfire-lms/panopto-sidecar/internal/backoff"
	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// Event types.
const (
	// TypeProcessing: Panopto has created the session; it is still processing.
	TypeProcessing = "upload.processing"
	// TypeCompleted: the session is ready to watch.
	TypeCompleted = "upload.completed"
	// TypeFailed: the upload ended in a state other than Complete.
	TypeFailed = "upload.failed"
)

// Retry policy: the wait before attempt n+1 is backoff.Delay(n, RetryBase,
// RetryMax) (5 s doubling, with jitter, up to an hour between attempts), and
// a message not delivered GiveUpAfter its event is dropped.
const (
	RetryBase   = 5 * time.Second
	RetryMax    = time.Hour
	GiveUpAfter = 24 * time.Hour
	// Timeout bounds one delivery attempt, response included.
	Timeout = 10 * time.Second
)

// Retry returns the wait before the next attempt after failed attempts
// (1 after the first failure).
func Retry(failed int) time.Duration { return backoff.Delay(failed-1, RetryBase, RetryMax) }

// Message is one event to deliver.
type Message struct {
	// ID is the webhook-id header: the same on every attempt.
	ID string `json:"id"`
	// Type is one of the Type constants.
	Type string `json:"type"`
	// Timestamp is when the event happened (the payload's "timestamp"; the
	// webhook-timestamp header is the attempt's time).
	Timestamp time.Time `json:"timestamp"`
	// Data is the payload's "data" object.
	Data json.RawMessage `json:"data"`
}

// NewMessage makes a message with a fresh ID.
func NewMessage(typ string, at time.Time, data any) (Message, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Message{}, fmt.Errorf("webhook: encode %s data: %w", typ, err)
	}
	var b [15]byte
	_, _ = rand.Read(b[:])
	id := "msg_" + base32.StdEncoding.EncodeToString(b[:])
	return Message{ID: id, Type: typ, Timestamp: at.UTC(), Data: raw}, nil
}

// Body is the JSON a receiver gets: {"type","timestamp","data"}.
func (m Message) Body() ([]byte, error) {
	return json.Marshal(struct {
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Data      json.RawMessage `json:"data"`
	}{m.Type, m.Timestamp.UTC().Format(time.RFC3339Nano), m.Data})
}

// CheckURL accepts an https URL, or an http one whose host is loopback (a
// receiver beside the sidecar). It refuses user information, which would
// sit in logs and configs as a credential: the signature authenticates the
// sender, and the receiver needs nothing else.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %w", err)
	case u.User != nil:
		return errors.New("must not carry user information; the signature is the credential")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("needs a host")
	case u.Fragment != "" || u.RawFragment != "":
		return errors.New("must not have a fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("must be https (plain http only to a loopback address)")
	}
	return fmt.Errorf("scheme %q: must be https", u.Scheme)
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// A SecretFunc returns the signing secret in force ("whsec_" and base64, as
// the specification's libraries take it). It is called on every attempt,
// so a rotated secret signs the next one.
type SecretFunc func(ctx context.Context) (token.Secret, error)

// Sender delivers messages to one URL.
type Sender struct {
	URL    string
	Secret SecretFunc
	Client *http.Client     // default: a client with Timeout that follows no redirects
	Now    func() time.Time // default time.Now
	Log    *slog.Logger     // default: discard
}

// DeliveryError is a failed attempt. It carries the status (0 when no
// response came) and never the response body.
type DeliveryError struct {
	Status   int
	Duration time.Duration
	Err      error // transport error or nil
}

func (e *DeliveryError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("webhook: no response after %v: %v", e.Duration.Round(time.Millisecond), e.Err)
	}
	return fmt.Sprintf("webhook: receiver answered %d after %v", e.Status, e.Duration.Round(time.Millisecond))
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Send makes one attempt: it signs m with the secret in force and POSTs it.
// Any 2xx is delivered (nil); anything else, a timeout or a transport error
// is a *DeliveryError, unless the secret could not be read or the message
// not encoded. The response body is read (at most 64 KiB, so the connection
// can be reused) and discarded.
func (s *Sender) Send(ctx context.Context, m Message) error {
	secret, err := s.Secret(ctx)
	if err != nil {
		return fmt.Errorf("webhook: signing secret: %w", err)
	}
	wh, err := standardwebhooks.NewWebhook(secret.Reveal())
	if err != nil {
		return errors.New("webhook: signing secret is not a whsec_ base64 secret")
	}
	body, err := m.Body()
	if err != nil {
		return fmt.Errorf("webhook: encode %s: %w", m.ID, err)
	}
	now := s.now()
	sig, err := wh.Sign(m.ID, now, body)
	if err != nil {
		return fmt.Errorf("webhook: sign %s: %w", m.ID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "panopto-sidecar")
	req.Header.Set(standardwebhooks.HeaderWebhookID, m.ID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)

	start := time.Now()
	resp, err := s.client().Do(req)
	took := time.Since(start)
	if err != nil {
		s.log().Warn("webhook not delivered", "id", m.ID, "type", m.Type, "dur", took, "err", scrub(err))
		return &DeliveryError{Duration: took, Err: scrub(err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.log().Warn("webhook not delivered", "id", m.ID, "type", m.Type, "status", resp.StatusCode, "dur", took)
		return &DeliveryError{Status: resp.StatusCode, Duration: took}
	}
	s.log().Info("webhook delivered", "id", m.ID, "type", m.Type, "status", resp.StatusCode, "dur", took)
	return nil
}

// scrub keeps a transport error's cause but not the URL it names (a URL
// may carry a query the operator considers private).
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func (s *Sender) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return &http.Client{Timeout: Timeout, CheckRedirect: noRedirects}
}

// noRedirects: a redirect is an answer other than 2xx, so a failed attempt;
// following it would turn the POST into a GET or resend a signed body to a
// URL nobody configured.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}
