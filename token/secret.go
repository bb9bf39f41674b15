// Package token owns the Panopto token domain: a Grant and the Store that
// keeps it across restarts and replicas (FileStore here, Vault in package
// vault), the Manager that keeps one account's bearer current (refresh ahead
// of expiry, once per replica set, by a lease and compare-and-swap in the
// store), the Pool of every account's manager, the keep-alive of idle
// grants, and Secret, the redacting type every secret travels in. It knows
// nothing of HTTP serving: the browser login is package login, the
// endpoints package proxy.
package token

import (
	"fmt"
	"log/slog"
)

// Secret holds a token, password or client secret. Every way of printing it
// (fmt verbs, slog, JSON) yields a redacted placeholder; Reveal is the only way
// to read the value, and is used only where the value goes on the wire.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret value. Call it only to put the value on the wire
// or into a store.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts %#v as well.
func (s Secret) GoString() string { return fmt.Sprintf("token.Secret(%q)", s.String()) }

// Format redacts every fmt verb, including %x and %q.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue redacts the secret in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON redacts the secret in JSON output. Stores use their own wire
// types with plain strings.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText redacts the secret in text encodings (YAML, TOML, maps keys).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
