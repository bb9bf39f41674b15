package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"
	"github.com/hashicorp/vault/api/auth/kubernetes"
)

// maxCredentialFile bounds what is read from a token, role or JWT file.
const maxCredentialFile = 64 << 10

// authMethod obtains a Vault token. login returns a secret whose Auth holds
// the token, whether it is renewable and its TTL.
type authMethod interface {
	login(ctx context.Context, c *Client) (*api.Secret, error)
}

func newAuthMethod(a Auth, getenv func(string) string) (authMethod, error) {
	switch a.Method {
	case MethodToken:
		t := &tokenAuth{file: a.TokenFile}
		if a.TokenFile == "" {
			t.env = token.Secret(strings.TrimSpace(getenv("VAULT_TOKEN")))
			if t.env.IsZero() {
				return nil, errors.New("vault: auth token: set token_file or $VAULT_TOKEN")
			}
			return t, nil
		}
		if _, _, err := t.reload(); err != nil {
			return nil, err
		}
		return t, nil
	case MethodAppRole:
		var errs []error
		if a.RoleIDFile == "" {
			errs = append(errs, errors.New("vault: auth approle: role_id_file is not set"))
		} else if _, err := readSecretFile(a.RoleIDFile); err != nil {
			errs = append(errs, fmt.Errorf("vault: auth approle: %w", err))
		}
		if a.SecretIDFile == "" {
			errs = append(errs, errors.New("vault: auth approle: secret_id_file is not set"))
		} else if _, err := readSecretFile(a.SecretIDFile); err != nil {
			errs = append(errs, fmt.Errorf("vault: auth approle: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return &appRoleAuth{roleIDFile: a.RoleIDFile, secretIDFile: a.SecretIDFile, mount: orDefault(a.MountPath, DefaultApproleAuth)}, nil
	case MethodKubernetes:
		k := &kubernetesAuth{role: a.Role, jwtFile: a.JWTFile, mount: orDefault(a.MountPath, DefaultK8sAuth)}
		if k.jwtFile == "" {
			k.jwtFile = DefaultJWTFile
		}
		var errs []error
		if k.role == "" {
			errs = append(errs, errors.New("vault: auth kubernetes: role is not set"))
		}
		if _, err := readSecretFile(k.jwtFile); err != nil {
			errs = append(errs, fmt.Errorf("vault: auth kubernetes: %w", err))
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return k, nil
	default:
		return nil, fmt.Errorf("vault: unknown auth method %q (want token, approle or kubernetes)", a.Method)
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return strings.Trim(s, "/")
}

// readSecretFile reads a small file holding one secret value, trimmed of
// surrounding white space. Errors name the file, never its content.
func readSecretFile(path string) (token.Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxCredentialFile+1)); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if buf.Len() > maxCredentialFile {
		return "", fmt.Errorf("read %s: larger than %d bytes", path, maxCredentialFile)
	}
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return "", fmt.Errorf("read %s: file is empty", path)
	}
	return token.Secret(s), nil
}

// tokenAuth uses a token from $VAULT_TOKEN or from token_file. The file is
// re-read when its size, mtime or content changes.
type tokenAuth struct {
	env  token.Secret
	file string

	mu      sync.Mutex
	token   token.Secret
	modTime time.Time
	size    int64
}

func (t *tokenAuth) current() token.Secret {
	if t.file == "" {
		return t.env
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.token
}

// reload re-reads token_file if it looks changed, and reports whether the
// token differs from the one held.
func (t *tokenAuth) reload() (token.Secret, bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, err := os.Stat(t.file)
	if err != nil {
		return t.token, false, fmt.Errorf("vault: auth token: read %s: %w", t.file, err)
	}
	if !t.token.IsZero() && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size {
		return t.token, false, nil
	}
	s, err := readSecretFile(t.file)
	if err != nil {
		return t.token, false, fmt.Errorf("vault: auth token: %w", err)
	}
	t.modTime, t.size = fi.ModTime(), fi.Size()
	changed := s != t.token
	t.token = s
	return s, changed, nil
}

func (t *tokenAuth) login(ctx context.Context, c *Client) (*api.Secret, error) {
	tok := t.env
	if t.file != "" {
		var err error
		if tok, _, err = t.reload(); err != nil {
			return nil, err
		}
	}
	// Calls use the token even before Vault confirms it (Vault may be down).
	c.api.SetToken(tok.Reveal())
	c.login.SetToken(tok.Reveal())
	defer c.login.ClearToken()
	self, err := c.login.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", safeError(err))
	}
	renewable, _ := self.TokenIsRenewable()
	ttl, _ := self.TokenTTL()
	// ttl is whole seconds, rounded down: a token with 0.9 s left says 0,
	// like one that never expires. expire_time tells them apart.
	if s, ok := self.Data["expire_time"].(string); ok && s != "" {
		if exp, err := time.Parse(time.RFC3339Nano, s); err == nil {
			left := time.Until(exp)
			if left <= 0 {
				return nil, errors.New("token has expired")
			}
			ttl = (left + time.Second - 1).Truncate(time.Second)
		}
	}
	return &api.Secret{Auth: &api.SecretAuth{
		ClientToken:   tok.Reveal(),
		Renewable:     renewable,
		LeaseDuration: int(ttl / time.Second),
	}}, nil
}

// appRoleAuth logs in with role_id and secret_id, both read from their files
// at every login.
type appRoleAuth struct {
	roleIDFile, secretIDFile, mount string
}

func (a *appRoleAuth) login(ctx context.Context, c *Client) (*api.Secret, error) {
	roleID, err := readSecretFile(a.roleIDFile)
	if err != nil {
		return nil, err
	}
	if _, err := readSecretFile(a.secretIDFile); err != nil {
		return nil, err
	}
	m, err := approle.NewAppRoleAuth(roleID.Reveal(), &approle.SecretID{FromFile: a.secretIDFile}, approle.WithMountPath(a.mount))
	if err != nil {
		return nil, errors.New("approle: invalid login settings")
	}
	return loginWith(ctx, c, m, "approle")
}

// kubernetesAuth logs in with the pod's service-account JWT, read from its
// file at every login because Kubernetes rotates it.
type kubernetesAuth struct {
	role, jwtFile, mount string
}

func (k *kubernetesAuth) login(ctx context.Context, c *Client) (*api.Secret, error) {
	if _, err := readSecretFile(k.jwtFile); err != nil {
		return nil, err
	}
	m, err := kubernetes.NewKubernetesAuth(k.role,
		kubernetes.WithServiceAccountTokenPath(k.jwtFile),
		kubernetes.WithMountPath(k.mount))
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return loginWith(ctx, c, m, "kubernetes")
}

// loginWith logs in on the tokenless login client, so a stale token is never
// sent along with the login.
func loginWith(ctx context.Context, c *Client, m api.AuthMethod, name string) (*api.Secret, error) {
	defer c.login.ClearToken()
	sec, err := c.login.Auth().Login(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("%s login: %w", name, safeError(err))
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("%s login: vault returned no token", name)
	}
	return sec, nil
}
