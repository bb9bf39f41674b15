package webhook

import (
	"errors"
	"strings"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// SecretEnv names the environment variable holding the signing secret when
// the credentials come from the environment.
const SecretEnv = "PANOPTO_SIDECAR_WEBHOOK_SECRET"

// CheckSecret reports whether secret is one the specification's library
// signs with: "whsec_" and a non-empty key in base64. Its error never
// contains the secret.
func CheckSecret(secret string) error {
	if !strings.HasPrefix(secret, "whsec_") {
		return errors.New(`must start with "whsec_", then the key in base64`)
	}
	if _, err := standardwebhooks.NewWebhook(secret); err != nil {
		return errors.New(`must be "whsec_" and a non-empty key in base64`)
	}
	return nil
}
