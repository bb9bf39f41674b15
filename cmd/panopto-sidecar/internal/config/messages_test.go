package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingFileIsNotFound: a config file that does not exist is reported
// as not found, with its path, and matches fs.ErrNotExist.
func TestMissingFileIsNotFound(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(missing, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want it to match fs.ErrNotExist", err)
	}
	if msg := err.Error(); !strings.Contains(msg, missing+" not found") || strings.Contains(msg, "invalid") {
		t.Errorf("err = %q, want it to say %s is not found", msg, missing)
	}
}

// TestProblemsInFileOrder: problems come in the order of their lines, those
// about keys absent from the file last.
func TestProblemsInFileOrder(t *testing.T) {
	// Found in another order: the decoder reports the unknown key first,
	// validate reports listen, then oauth, then shutdown_grace.
	data := []byte(`shutdown_grace: -1s
oauth: {client_auth: pigeon}
listen: nowhere
colour: red
tls: {mode: files}
`)
	_, err := Parse(data, nil)
	var lines []int
	for _, msg := range problems(err) {
		line := 0
		if i := strings.LastIndex(msg, "(line "); i >= 0 {
			if _, serr := fmt.Sscanf(msg[i:], "(line %d)", &line); serr != nil {
				t.Fatalf("%q: %v", msg, serr)
			}
		}
		lines = append(lines, line)
	}
	want := []int{1, 2, 3, 4, 0, 0} // tls.cert_file and tls.key_file are absent
	if len(lines) != len(want) {
		t.Fatalf("lines %v, want %v:\n%s", lines, want, strings.Join(problems(err), "\n"))
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Fatalf("lines %v, want %v:\n%s", lines, want, strings.Join(problems(err), "\n"))
		}
	}
}

// TestNoCascadeFromListen: an invalid listen port is one problem; the
// public_url derived from it is not reported as a second one.
func TestNoCascadeFromListen(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:http"} {
		_, err := Parse([]byte("listen: \""+listen+"\"\n"), nil)
		got := problems(err)
		if len(got) != 1 || !strings.HasPrefix(got[0], "listen: ") {
			t.Errorf("listen %s: problems %q, want only the listen one", listen, got)
		}
	}
	// public_url written by the operator is still checked.
	_, err := Parse([]byte("listen: 127.0.0.1:99999\npublic_url: http://localhost:99999\n"), nil)
	if got := problems(err); len(got) != 2 {
		t.Errorf("problems %q, want listen and public_url", got)
	}
}
