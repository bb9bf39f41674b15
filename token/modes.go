package token

import "fmt"

// GrantType is how the default grant is obtained. Its text form is the
// config value: "authorization_code" or "password".
type GrantType int

const (
	// GrantAuthorizationCode: a person logs in once, in a browser.
	GrantAuthorizationCode GrantType = iota
	// GrantPassword: the sidecar logs in with the Panopto user's name and
	// password from the client credentials; no browser.
	GrantPassword
)

var grantNames = []string{GrantAuthorizationCode: "authorization_code", GrantPassword: "password"}

func (g GrantType) String() string               { return nameOf(grantNames, int(g)) }
func (g GrantType) MarshalText() ([]byte, error) { return marshalName(grantNames, "grant", int(g)) }
func (g *GrantType) UnmarshalText(b []byte) error {
	return parseName(grantNames, "grant", b, (*int)(g))
}

// AccountsMode says whether requests may name a Panopto user, and how a
// named user gets a grant. Its text form is the config value: "off", "idp"
// or "login".
type AccountsMode int

const (
	// AccountsOff: every request uses the default grant.
	AccountsOff AccountsMode = iota
	// AccountsIdP: a user's grant is obtained on first use with the
	// identity provider's password grant; no browser.
	AccountsIdP
	// AccountsLogin: each user logs in once, in a browser.
	AccountsLogin
)

var accountsModeNames = []string{AccountsOff: "off", AccountsIdP: "idp", AccountsLogin: "login"}

func (m AccountsMode) String() string { return nameOf(accountsModeNames, int(m)) }
func (m AccountsMode) MarshalText() ([]byte, error) {
	return marshalName(accountsModeNames, "accounts mode", int(m))
}
func (m *AccountsMode) UnmarshalText(b []byte) error {
	return parseName(accountsModeNames, "accounts mode", b, (*int)(m))
}

func nameOf(names []string, i int) string {
	if i < 0 || i >= len(names) {
		return fmt.Sprintf("unknown(%d)", i)
	}
	return names[i]
}

func marshalName(names []string, what string, i int) ([]byte, error) {
	if i < 0 || i >= len(names) {
		return nil, fmt.Errorf("marshal %s: unknown value %d", what, i)
	}
	return []byte(names[i]), nil
}

func parseName(names []string, what string, b []byte, out *int) error {
	for i, n := range names {
		if n == string(b) {
			*out = i
			return nil
		}
	}
	return fmt.Errorf("parse %s: unknown value %q", what, b)
}
