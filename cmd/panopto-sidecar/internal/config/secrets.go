package config

import (
	"errors"
	"fmt"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/doubtfire-lms/panopto-sidecar/token"
)

// maxSecretFile bounds what is read from a file holding one secret, as the
// vault package bounds its token, role and JWT files.
const maxSecretFile = 64 << 10

// Secrets are the values of the files the config names that hold secrets,
// read by Load with the config, so that a config in force always comes with
// usable secrets. Parse leaves them empty.
type Secrets struct {
	// SharedSecret is inbound.shared_secret_file's content without the
	// white space around it. Load sets it whenever that key is set.
	SharedSecret token.Secret
}

// secretFile is one key naming a file that holds a secret.
type secretFile struct {
	key, path string
	what      string        // what the file holds, in words: "the shared secret"
	blank     string        // what a blank file would do, "" when nothing worse than failing
	hint      string        // added when the file cannot be read
	into      *token.Secret // where its value goes; nil when only checked (the vault package reads its own files)
}

// secretFiles lists the secret files c names that serve would use: the
// shared secret, and while Vault is used the files of its auth method.
func (c *Config) secretFiles(s *Secrets) []secretFile {
	var out []secretFile
	if f := c.Inbound.SharedSecretFile; f != "" {
		out = append(out, secretFile{key: "inbound.shared_secret_file", path: f, what: "the shared secret",
			blank: "a blank file would turn authentication off", into: &s.SharedSecret})
	}
	if !c.NeedsVault() {
		return out
	}
	add := func(key, path, what string) {
		if path != "" {
			out = append(out, secretFile{key: key, path: path, what: what})
		}
	}
	a := c.Vault.Auth
	switch a.Method {
	case VaultAuthToken:
		add("vault.auth.token_file", a.TokenFile, "the Vault token")
	case VaultAuthAppRole:
		add("vault.auth.role_id_file", a.RoleIDFile, "the AppRole role_id")
		add("vault.auth.secret_id_file", a.SecretIDFile, "the AppRole secret_id")
	case VaultAuthKubernetes:
		add("vault.auth.jwt_file", a.JWTFile, "the service account token")
		if a.JWTFile == vault.DefaultJWTFile {
			out[len(out)-1].hint = "Kubernetes mounts it there only inside a pod"
		}
	}
	return out
}

// readSecrets reads every secret file c names into c.Secrets and returns a
// problem for each that cannot be used, under its key path.
func (c *Config) readSecrets(lines map[string]int) []error {
	v := &validator{lines: lines}
	c.Secrets = c.secretsFrom(v)
	return v.errs
}

// ReadSecrets reads the secret files c names again, as Load did: their
// values, or every problem with them. A change in their content that Load
// would accept is a change of config.
func (c *Config) ReadSecrets() (Secrets, error) {
	v := &validator{}
	s := c.secretsFrom(v)
	return s, errors.Join(v.errs...)
}

func (c *Config) secretsFrom(v *validator) Secrets {
	var s Secrets
	for _, f := range c.secretFiles(&s) {
		val, bad := readSecret(f.path)
		if bad == nil {
			if f.into != nil {
				*f.into = val
			}
			continue
		}
		msg := bad.msg
		switch bad.kind {
		case unreadable:
			if f.hint != "" {
				msg += "; " + f.hint
			}
		case notAFile:
			msg += "; name the file that holds " + f.what
		case blank:
			msg += "; put " + f.what + " in it"
			if f.blank != "" {
				msg += " (" + f.blank + ")"
			}
		}
		v.problemf(f.key, "%s", msg)
	}
	return s
}

// secretProblem is why a secret file cannot be used, in words that name the
// file, never its content.
type secretProblem struct {
	kind secretProblemKind
	msg  string
}

type secretProblemKind int

const (
	unreadable secretProblemKind = iota
	notAFile
	blank
	tooLarge
)

// readSecret reads a file holding one secret and trims the white space
// around it.
func readSecret(path string) (token.Secret, *secretProblem) {
	// Stat first: opening a named pipe would wait for a writer.
	fi, err := os.Stat(path)
	if err != nil {
		return "", cannotRead(path, err)
	}
	switch {
	case fi.IsDir():
		return "", &secretProblem{notAFile, path + " is a directory"}
	case !fi.Mode().IsRegular():
		return "", &secretProblem{notAFile, path + " is not a regular file"}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", cannotRead(path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	switch {
	case err != nil:
		return "", cannotRead(path, err)
	case len(b) > maxSecretFile:
		return "", &secretProblem{tooLarge, fmt.Sprintf("%s is larger than %d KiB, too large for one secret", path, maxSecretFile>>10)}
	case len(b) == 0:
		return "", &secretProblem{blank, path + " is empty"}
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", &secretProblem{blank, path + " holds only white space"}
	}
	return token.Secret(s), nil
}

func cannotRead(path string, err error) *secretProblem {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is said once
	}
	return &secretProblem{unreadable, fmt.Sprintf("cannot read %s: %v", path, err)}
}
