package config

import (
	"strings"
	"testing"
)

func TestWebhookConfig(t *testing.T) {
	const good = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const url = "uploads:\n  webhook_url: https://ontrack.example.edu/api/panopto/hooks\n"
	for _, tc := range []struct {
		name, yaml string
		env        []string
		want       string // a problem, "" for none
	}{
		{"off: no secret needed", "uploads: {webhook_url: \"\"}\n", nil, ""},
		{"env secret set", url, []string{"PANOPTO_SIDECAR_WEBHOOK_SECRET", good}, ""},
		{"env secret missing", url, nil, "uploads.webhook_url: needs the webhook signing secret in $PANOPTO_SIDECAR_WEBHOOK_SECRET"},
		{"env secret without whsec_", url, []string{"PANOPTO_SIDECAR_WEBHOOK_SECRET", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
			`uploads.webhook_url: $PANOPTO_SIDECAR_WEBHOOK_SECRET is not a webhook signing secret: must start with "whsec_"`},
		{"env secret not base64", url, []string{"PANOPTO_SIDECAR_WEBHOOK_SECRET", "whsec_s3cr3t!!"},
			"uploads.webhook_url: $PANOPTO_SIDECAR_WEBHOOK_SECRET is not a webhook signing secret"},
		{"vault: checked while running", "credentials: {source: vault}\n" + url, nil, ""},
		{"loopback http", "uploads: {webhook_url: \"http://127.0.0.1:3000/hooks\"}\n", []string{"PANOPTO_SIDECAR_WEBHOOK_SECRET", good}, ""},
		{"user information", "uploads: {webhook_url: \"https://u:p@ontrack.example.edu/hooks\"}\n", []string{"PANOPTO_SIDECAR_WEBHOOK_SECRET", good},
			"uploads.webhook_url: must not carry user information"},
		{"empty key", "credentials: {webhook_secret_key: \"\"}\n", nil, ""}, // "" is the default
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), env(tc.env...))
			got := problems(err)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("problems %q", got)
				}
				if c.Credentials.WebhookSecretKey != "webhook_secret" {
					t.Errorf("webhook_secret_key = %q", c.Credentials.WebhookSecretKey)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Fatalf("problems %q, want one with %q", got, tc.want)
			}
			if strings.Contains(got[0], "s3cr3t") || strings.Contains(got[0], "u:p@") {
				t.Errorf("the problem shows a secret: %s", got[0])
			}
		})
	}
}
