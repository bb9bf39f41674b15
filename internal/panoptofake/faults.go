package panoptofake

import (
	"net/http"
	"strconv"
	"time"
)

// Fault is a misbehaviour queued for the next calls to an endpoint. Build one
// with the Fault* values and functions.
type Fault struct {
	kind   faultKind
	status int
	delay  time.Duration
}

type faultKind int

const (
	faultStatus faultKind = iota + 1
	faultDelay
	faultReset
	faultGarbage
	faultEmpty200
	faultInvalidClient
)

var (
	// FaultStatus500 answers 500 with an HTML body, as a failing front end does.
	FaultStatus500 = FaultStatus(http.StatusInternalServerError)
	// FaultReset hijacks the connection and closes it without an answer.
	FaultReset = Fault{kind: faultReset}
	// FaultGarbage answers 200 with a body that is not JSON.
	FaultGarbage = Fault{kind: faultGarbage}
	// FaultEmpty200 answers 200 application/json with an empty body.
	FaultEmpty200 = Fault{kind: faultEmpty200}
	// FaultInvalidClient answers 401 {"error":"invalid_client"} whatever the
	// credentials, as after a secret rotation the caller has not seen yet.
	FaultInvalidClient = Fault{kind: faultInvalidClient}
)

// FaultStatus answers the given status (e.g. 429 with Retry-After: 1, 502,
// 503) with a short text body.
func FaultStatus(code int) Fault { return Fault{kind: faultStatus, status: code} }

// FaultTimeout holds the request for delay (or until the client gives up,
// whichever comes first) and then serves it normally. A delay of zero or less
// holds it until the client gives up.
func FaultTimeout(delay time.Duration) Fault { return Fault{kind: faultDelay, delay: delay} }

// InjectTokenFaults queues faults for the next token-endpoint calls, one per
// call, in order. They apply before client authentication and grant checks.
func (s *Server) InjectTokenFaults(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenFaults = append(s.tokenFaults, f...)
}

// InjectAPIFaults queues faults for the next calls to /Panopto/api/ and
// /Panopto/PublicAPI/, one per call, before the bearer is checked.
func (s *Server) InjectAPIFaults(f ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiFaults = append(s.apiFaults, f...)
}

// nextFault pops the next fault from q, if any.
func (s *Server) nextFault(q *[]Fault) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(*q) == 0 {
		return Fault{}, false
	}
	f := (*q)[0]
	*q = (*q)[1:]
	s.stats.FaultsServed++
	return f, true
}

// serveFault answers the fault and reports whether the request is finished.
// A delay fault that ran its course reports false: serve the request.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	switch f.kind {
	case faultDelay:
		if f.delay <= 0 {
			<-r.Context().Done()
			return true
		}
		t := time.NewTimer(f.delay)
		defer t.Stop()
		select {
		case <-r.Context().Done():
			return true
		case <-t.C:
			return false
		}
	case faultReset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			// HTTP/2 cannot be hijacked; panicking with ErrAbortHandler
			// resets the stream instead.
			panic(http.ErrAbortHandler)
		}
		_ = conn.Close()
	case faultGarbage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>Service temporarily unavailable</body></html>"))
	case faultEmpty200:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case faultInvalidClient:
		s.countInvalidClient()
		writeJSON(w, http.StatusUnauthorized, oauthError{Error: "invalid_client"})
	default:
		if f.status == http.StatusTooManyRequests || f.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(1))
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte("<html><body>" + http.StatusText(f.status) + "</body></html>"))
	}
	return true
}

// FailProcessing makes the processing of every upload whose manifest names
// a file called name end in ProcessingError (State 5) with message, as
// Panopto's does for a file it cannot decode. No session is created.
func (s *Server) FailProcessing(name, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failFiles == nil {
		s.failFiles = map[string]string{}
	}
	s.failFiles[name] = message
}
