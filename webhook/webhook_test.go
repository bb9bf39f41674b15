package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretB = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
)

// receiver is OnTrack's side: it verifies each request with the
// specification's library and a secret of its own choosing.
type receiver struct {
	mu      sync.Mutex
	secret  string
	status  []int // answers to give, in order; 204 once used up
	got     []http.Header
	bodies  [][]byte
	verrors []error
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	wh, _ := standardwebhooks.NewWebhook(r.secret)
	r.verrors = append(r.verrors, wh.Verify(body, req.Header))
	r.got = append(r.got, req.Header.Clone())
	r.bodies = append(r.bodies, body)
	st := http.StatusNoContent
	if len(r.status) > 0 {
		st, r.status = r.status[0], r.status[1:]
	}
	w.WriteHeader(st)
	_, _ = io.WriteString(w, "receiver says: secret-in-body")
}

func staticSecret(s string) webhook.SecretFunc {
	return func(context.Context) (token.Secret, error) { return token.Secret(s), nil }
}

func TestSendSignsPerSpecification(t *testing.T) {
	rcv := &receiver{secret: secretA}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	m, err := webhook.NewMessage(webhook.TypeCompleted, at, map[string]any{"id": "u-1", "metadata": map[string]any{"task_id": 123}})
	if err != nil {
		t.Fatal(err)
	}
	s := &webhook.Sender{URL: srv.URL + "/webhooks/panopto", Secret: staticSecret(secretA)}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if len(rcv.got) != 1 || rcv.verrors[0] != nil {
		t.Fatalf("receiver got %d requests, verification %v", len(rcv.got), rcv.verrors)
	}
	h := rcv.got[0]
	if h.Get("webhook-id") != m.ID || !strings.HasPrefix(m.ID, "msg_") || !strings.HasPrefix(h.Get("webhook-signature"), "v1,") ||
		h.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", h)
	}
	var body struct {
		Type      string
		Timestamp time.Time
		Data      map[string]any
	}
	if err := json.Unmarshal(rcv.bodies[0], &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "upload.completed" || !body.Timestamp.Equal(at) || body.Data["id"] != "u-1" {
		t.Errorf("body %s", rcv.bodies[0])
	}
	// The signature covers the body: one changed byte fails verification.
	wh, _ := standardwebhooks.NewWebhook(secretA)
	if err := wh.Verify(bytes.Replace(rcv.bodies[0], []byte("u-1"), []byte("u-2"), 1), h); err == nil {
		t.Error("a changed body still verifies")
	}
}

// TestSendKeepsIDAcrossAttempts: a receiver that fails twice gets the third
// attempt with the same webhook-id and a valid signature; the rotated secret
// signs the attempt after the rotation.
func TestSendKeepsIDAcrossAttempts(t *testing.T) {
	rcv := &receiver{secret: secretA, status: []int{http.StatusInternalServerError, http.StatusBadGateway}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	var mu sync.Mutex
	current := secretA
	s := &webhook.Sender{URL: srv.URL, Secret: func(context.Context) (token.Secret, error) {
		mu.Lock()
		defer mu.Unlock()
		return token.Secret(current), nil
	}}
	m, _ := webhook.NewMessage(webhook.TypeFailed, time.Now(), map[string]string{"message": "MediaFileMissing"})
	for i, want := range []int{500, 502} {
		var de *webhook.DeliveryError
		if err := s.Send(context.Background(), m); !errors.As(err, &de) || de.Status != want {
			t.Fatalf("attempt %d: %v, want status %d", i+1, err, want)
		} else if strings.Contains(err.Error(), "secret-in-body") {
			t.Fatalf("error carries the response body: %v", err)
		}
	}
	if err := s.Send(context.Background(), m); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	for i, h := range rcv.got {
		if h.Get("webhook-id") != m.ID || rcv.verrors[i] != nil {
			t.Errorf("attempt %d: id %q verification %v", i+1, h.Get("webhook-id"), rcv.verrors[i])
		}
	}

	mu.Lock()
	current = secretB
	mu.Unlock()
	rcv.mu.Lock()
	rcv.secret = secretB
	rcv.mu.Unlock()
	if err := s.Send(context.Background(), m); err != nil || rcv.verrors[3] != nil {
		t.Fatalf("after rotation: %v, verification %v", err, rcv.verrors[3])
	}
	old, _ := standardwebhooks.NewWebhook(secretA)
	if old.Verify(rcv.bodies[3], rcv.got[3]) == nil {
		t.Error("the rotated-out secret still verifies the new attempt")
	}
}

func TestSendFailures(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m, _ := webhook.NewMessage(webhook.TypeProcessing, time.Now(), map[string]string{})

	redirect := httptest.NewServer(http.RedirectHandler("http://127.0.0.1:1/elsewhere", http.StatusFound))
	defer redirect.Close()
	var de *webhook.DeliveryError
	s := &webhook.Sender{URL: redirect.URL + "/hook?key=private-query", Secret: staticSecret(secretA), Log: log}
	if err := s.Send(context.Background(), m); !errors.As(err, &de) || de.Status != http.StatusFound {
		t.Errorf("redirect: %v, want a failed attempt with 302", err)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	s.URL = url + "/hook?key=private-query"
	if err := s.Send(context.Background(), m); !errors.As(err, &de) || de.Status != 0 || de.Err == nil {
		t.Errorf("refused connection: %v", err)
	}

	s.Secret = staticSecret("not-a-whsec-secret!")
	if err := s.Send(context.Background(), m); err == nil || errors.As(err, &de) {
		t.Errorf("bad secret: %v, want a configuration error", err)
	}
	s.Secret = func(context.Context) (token.Secret, error) { return "", errors.New("vault sealed") }
	if err := s.Send(context.Background(), m); err == nil || !strings.Contains(err.Error(), "vault sealed") {
		t.Errorf("secret unavailable: %v", err)
	}
	if strings.Contains(logs.String(), "private-query") || strings.Contains(logs.String(), "MfKQ9r8") {
		t.Errorf("logs carry the URL's query or the secret:\n%s", logs.String())
	}
}

func TestSendTimesOut(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer slow.Close()
	defer close(release)
	m, _ := webhook.NewMessage(webhook.TypeProcessing, time.Now(), nil)
	s := &webhook.Sender{URL: slow.URL, Secret: staticSecret(secretA)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var de *webhook.DeliveryError
	if err := s.Send(ctx, m); !errors.As(err, &de) || de.Status != 0 {
		t.Fatalf("stuck receiver: %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://ontrack.example.edu/api/panopto/hooks", true},
		{"http://127.0.0.1:3000/api/panopto/hooks", true},
		{"http://[::1]:3000/hooks", true},
		{"http://localhost/hooks", true},
		{"http://ontrack.example.edu/hooks", false},
		{"http://10.0.0.5/hooks", false},
		{"https://user:pw@ontrack.example.edu/hooks", false},
		{"https://ontrack.example.edu/hooks#frag", false},
		{"ftp://ontrack.example.edu/", false},
		{"/relative", false},
		{"https://", false},
		{"://", false},
	} {
		if err := webhook.CheckURL(tt.url); (err == nil) != tt.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestRetrySchedule(t *testing.T) {
	for failed, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 5: 80 * time.Second, 12: time.Hour, 40: time.Hour} {
		for range 50 {
			if d := webhook.Retry(failed); d < want/2 || d > want {
				t.Fatalf("Retry(%d) = %v, want in [%v, %v]", failed, d, want/2, want)
			}
		}
	}
}

func TestCheckSecret(t *testing.T) {
	for s, ok := range map[string]bool{
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": true,
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw":       false, // the library takes it, the format does not
		"whsec_":                                 false,
		"whsec_not base64!":                      false,
		"":                                       false,
	} {
		err := webhook.CheckSecret(s)
		if (err == nil) != ok {
			t.Errorf("CheckSecret(%q) = %v", s, err)
		}
		if err != nil && len(s) > 6 && strings.Contains(err.Error(), s[6:]) {
			t.Errorf("CheckSecret's error shows the secret: %v", err)
		}
	}
}
