package config

import "github.com/doubtfire-lms/panopto-sidecar/webhook"

// validateWebhook checks uploads.webhook_url and, where it can be decided
// now, its signing secret: with credentials.source env the secret is
// $PANOPTO_SIDECAR_WEBHOOK_SECRET, which must be set and a whsec_ base64
// secret; with vault it is read (and checked) while running, as the client
// secret is. The secret's value is never in a problem.
func (c *Config) validateWebhook(lines map[string]int, getenv func(string) string) []error {
	v := &validator{lines: lines}
	u := c.Uploads.WebhookURL
	if u == "" {
		return v.errs
	}
	if err := webhook.CheckURL(u); err != nil {
		// Not echoed: the URL may carry a query its owner keeps private.
		v.problemf("uploads.webhook_url", "%v", err)
	}
	if c.Credentials.Source != CredentialsEnv {
		return v.errs
	}
	switch secret := getenv(webhook.SecretEnv); {
	case secret == "":
		v.problemf("uploads.webhook_url", "needs the webhook signing secret in $%s (credentials.source env), "+
			"e.g. whsec_ and 24 or more random bytes in base64; the receiver verifies with the same secret", webhook.SecretEnv)
	case webhook.CheckSecret(secret) != nil:
		v.problemf("uploads.webhook_url", "$%s is not a webhook signing secret: %v", webhook.SecretEnv, webhook.CheckSecret(secret))
	}
	return v.errs
}
