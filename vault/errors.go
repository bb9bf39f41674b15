package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

// ErrUnavailable is matched (errors.Is) by an Error for a call that did not
// reach Vault, timed out, or was answered 5xx (sealed, standby, failing).
var ErrUnavailable = errors.New("vault unavailable")

// ErrSealed is matched by an Error for a call refused because Vault is sealed.
var ErrSealed = errors.New("vault sealed")

// ErrDenied is matched by an Error for a call answered 403: the token is
// invalid or expired, or its policy does not allow the operation.
var ErrDenied = errors.New("vault permission denied")

// Error is a failed Vault call in a form that is safe to log: Vault's own
// error messages and the status code are kept; a response body that is not
// Vault's JSON error document, request URLs and headers are not.
type Error struct {
	StatusCode int      // 0 when Vault was not reached
	Messages   []string // Vault's error messages, each cut to 200 bytes
	cause      error    // transport or context error; never a response
}

const maxMessage = 200

func (e *Error) Error() string {
	switch {
	case e.StatusCode == 0 && e.cause != nil:
		return "unreachable: " + e.cause.Error()
	case len(e.Messages) == 0:
		return fmt.Sprintf("status %d", e.StatusCode)
	default:
		return fmt.Sprintf("status %d: %s", e.StatusCode, strings.Join(e.Messages, "; "))
	}
}

// Unwrap returns the transport or context error, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is matches ErrUnavailable, ErrSealed and ErrDenied.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnavailable:
		return e.StatusCode == 0 || e.StatusCode >= 500
	case ErrSealed:
		return e.sealed()
	case ErrDenied:
		return e.StatusCode == http.StatusForbidden
	}
	return false
}

func (e *Error) sealed() bool {
	return e.StatusCode == http.StatusServiceUnavailable && e.contains("sealed")
}

func (e *Error) contains(s string) bool {
	for _, m := range e.Messages {
		if strings.Contains(strings.ToLower(m), s) {
			return true
		}
	}
	return false
}

// safeError turns an error from the api package into an *Error (nil stays
// nil; errors this package made itself pass through).
func safeError(err error) error {
	if err == nil {
		return nil
	}
	var own *Error
	if errors.As(err, &own) {
		return err // already made safe, with context added by this package
	}
	var re *api.ResponseError
	if errors.As(err, &re) {
		e := &Error{StatusCode: re.StatusCode}
		if re.RawError {
			e.Messages = []string{"(non-vault response body withheld)"}
			return e
		}
		for _, m := range re.Errors {
			m = strings.TrimSpace(m)
			if len(m) > maxMessage {
				m = m[:maxMessage] + "…"
			}
			if m != "" {
				e.Messages = append(e.Messages, m)
			}
		}
		return e
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{cause: fmt.Errorf("no answer in time: %w", context.DeadlineExceeded)}
	case errors.Is(err, context.Canceled):
		return &Error{cause: context.Canceled}
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return &Error{cause: op}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return &Error{cause: dns}
	}
	// Anything else (TLS failures, malformed responses) keeps its text, cut
	// short; the api package does not put response data into these.
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	return &Error{cause: errors.New(msg)}
}
