// Package ascii compares and lower-cases text with ASCII letters folded and
// nothing else. Unicode folding (strings.EqualFold) would let KELVIN SIGN
// (U+212A) stand for "k" and LONG S (U+017F) for "s", so a name, a route or
// a header could match what it only looks like, at another byte length.
// Route matching, Host checks, identity matching and the framing guard's
// header names all fold this way.
package ascii

// Lower returns c lower-cased if it is an ASCII capital letter.
func Lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// ToLower lower-cases the ASCII letters of s only.
func ToLower(s string) string {
	for i := range len(s) {
		if Lower(s[i]) != s[i] {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = Lower(b[j])
			}
			return string(b)
		}
	}
	return s
}

// EqualFold reports whether a and b are equal with ASCII letters compared
// regardless of case.
func EqualFold[A, B ~string | ~[]byte](a A, b B) bool {
	return len(a) == len(b) && HasPrefixFold(a, b)
}

// HasPrefixFold is strings.HasPrefix with ASCII letters compared regardless
// of case.
func HasPrefixFold[A, B ~string | ~[]byte](s A, prefix B) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		if x, y := s[i], prefix[i]; x != y && Lower(x) != Lower(y) {
			return false
		}
	}
	return true
}

// ContainsFold is strings.Contains with ASCII letters compared regardless
// of case.
func ContainsFold(s, substr string) bool {
	for i := 0; i+len(substr) <= len(s); i++ {
		if HasPrefixFold(s[i:], substr) {
			return true
		}
	}
	return false
}
