package webhook_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/webhook"
)

// TestRubyReceiverVerifies: OnTrack's side is Ruby. A receiver using the
// standardwebhooks gem's own code (the Ruby library shipped in the same
// module as the Go one) accepts what Send signs, and refuses it once the
// secrets differ.
func TestRubyReceiverVerifies(t *testing.T) {
	ruby, err := exec.LookPath("ruby")
	if err != nil {
		if os.Getenv("PANOPTO_SIDECAR_REQUIRE_PEERS") == "1" {
			t.Fatal("ruby is not installed (apt-get install ruby)")
		}
		t.Skip("ruby is not installed")
	}
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/standard-webhooks/standard-webhooks/libraries").Output()
	if err != nil {
		t.Fatalf("locate the standard-webhooks module: %v", err)
	}
	lib := strings.TrimSpace(string(dir)) + "/ruby/lib"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, ruby, "-I", lib, "testdata/receiver.rb")
	cmd.Env = append(os.Environ(), "WEBHOOK_SECRET="+secretA)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	next := func() string {
		t.Helper()
		done := make(chan bool, 1)
		go func() { done <- lines.Scan() }()
		select {
		case ok := <-done:
			if !ok {
				t.Fatalf("receiver ended: %v", lines.Err())
			}
			return lines.Text()
		case <-time.After(30 * time.Second):
			t.Fatal("receiver said nothing for 30 s")
		}
		return ""
	}
	port := next()

	m, _ := webhook.NewMessage(webhook.TypeCompleted, time.Now(), map[string]any{"id": "u-1", "message": "Zoë's \"quoted\" <video> & more"})
	s := &webhook.Sender{URL: "http://127.0.0.1:" + port + "/api/panopto/hooks", Secret: staticSecret(secretA)}
	if err := s.Send(ctx, m); err != nil {
		t.Fatalf("Ruby receiver refused: %v", err)
	}
	if got, want := next(), "ok "+m.ID+" upload.completed POST"; got != want {
		t.Fatalf("receiver: %q, want %q", got, want)
	}
	s.Secret = staticSecret(secretB)
	if err := s.Send(ctx, m); err == nil {
		t.Fatal("a delivery signed with another secret was accepted")
	}
	if got := next(); got != "bad No matching signature found" {
		t.Fatalf("receiver: %q", got)
	}
}
