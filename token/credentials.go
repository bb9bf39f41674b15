package token

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// ClientCredentials identify the sidecar to Panopto's token endpoint.
type ClientCredentials struct {
	ID     string
	Secret Secret
	// Username and Password are the Panopto user for oauth.grant: password.
	Username string
	Password Secret
	// AppKey is the identity provider's application key (accounts.mode: idp).
	AppKey Secret
	// Source and Version describe where they came from, for /-/status
	// ("env", or "vault" with the KV version). Never secret.
	Source  string
	Version string
}

// CredentialSource hands out the current client credentials.
type CredentialSource interface {
	Credentials(ctx context.Context) (ClientCredentials, error)
}

// Rereader is implemented by credential sources that can re-read at once,
// for example when the token endpoint answers invalid_client.
type Rereader interface {
	Reread(ctx context.Context) error
}

// StaticCredentials is a CredentialSource with fixed values (from the
// environment).
type StaticCredentials ClientCredentials

// Credentials implements CredentialSource.
func (s StaticCredentials) Credentials(context.Context) (ClientCredentials, error) {
	if s.ID == "" {
		return ClientCredentials{}, errors.New("credentials: client id is empty")
	}
	return ClientCredentials(s), nil
}

// EnvCredentials reads PANOPTO_CLIENT_ID and PANOPTO_CLIENT_SECRET through
// getenv.
func EnvCredentials(getenv func(string) string) (StaticCredentials, error) {
	id := getenv("PANOPTO_CLIENT_ID")
	secret := getenv("PANOPTO_CLIENT_SECRET")
	var errs []error
	if id == "" {
		errs = append(errs, fmt.Errorf("credentials: PANOPTO_CLIENT_ID is not set"))
	}
	if secret == "" {
		errs = append(errs, fmt.Errorf("credentials: PANOPTO_CLIENT_SECRET is not set"))
	}
	if err := errors.Join(errs...); err != nil {
		return StaticCredentials{}, err
	}
	return StaticCredentials{
		ID:       id,
		Secret:   Secret(secret),
		Username: getenv("PANOPTO_USERNAME"),
		Password: Secret(getenv("PANOPTO_PASSWORD")),
		AppKey:   Secret(getenv("PANOPTO_APP_KEY")),
		Source:   "env",
	}, nil
}

// SwappableCredentials is the credential source in force, which a config
// reload may replace while it is in use. Hand the same one to everything
// that reads the credentials; Swap reaches all of them at once.
type SwappableCredentials struct {
	src atomic.Pointer[sourceBox]
}

// sourceBox lets an atomic.Pointer hold an interface.
type sourceBox struct{ CredentialSource }

// NewSwappableCredentials returns a source that reads src until Swap.
func NewSwappableCredentials(src CredentialSource) *SwappableCredentials {
	s := &SwappableCredentials{}
	s.Swap(src)
	return s
}

// Swap makes src the source in force.
func (s *SwappableCredentials) Swap(src CredentialSource) {
	s.src.Store(&sourceBox{src})
}

// Credentials implements CredentialSource with the source in force.
func (s *SwappableCredentials) Credentials(ctx context.Context) (ClientCredentials, error) {
	return s.src.Load().Credentials(ctx)
}

// Source returns the source in force.
func (s *SwappableCredentials) Source() CredentialSource {
	return s.src.Load().CredentialSource
}

// Reread implements Rereader: the source in force re-reads, if it can.
func (s *SwappableCredentials) Reread(ctx context.Context) error {
	if rr, ok := s.src.Load().CredentialSource.(Rereader); ok {
		return rr.Reread(ctx)
	}
	return errors.New("credentials: source cannot re-read")
}
