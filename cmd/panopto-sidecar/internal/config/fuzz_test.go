package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse checks that Parse never panics, and that a config it accepts
// survives a round trip: marshalled and parsed again, it is the same config.
// Seeds: testdata/fuzz/FuzzParse, the testdata configs and config.yaml.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(repoRoot, "testdata/config/*/*.yaml"))
	files = append(files, filepath.Join(repoRoot, "config.yaml"))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	getenv := env("VAULT_ADDR", "https://vault.example:8200", "VAULT_NAMESPACE", "ns")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, getenv)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and %v", err)
			}
			return
		}
		roundTrip(t, c, getenv)
	})
}

// roundTrip checks that c, marshalled and parsed again, is unchanged.
func roundTrip(t *testing.T, c *Config, getenv func(string) string) {
	t.Helper()
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	again, err := Parse(out, getenv)
	if err != nil {
		t.Fatalf("parse of the marshalled config: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, again) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\n%s", again, c, out)
	}
}

// TestRoundTrip makes sure FuzzParse's property is not vacuous: configs that
// parse, tricky ones included, survive marshalling.
func TestRoundTrip(t *testing.T) {
	getenv := env("VAULT_ADDR", "https://vault.example:8200")
	for _, data := range []string{
		"",
		"oauth: {scopes: &s [openid, api], grant: &g password}\ntls: {acme: {domains: *s, email: *g}}\nlog: {level: &l debug}\nroutes: [&r {prefix: /Panopto/api/, inject: true}]",
		"accounts: {mode: off, header: 'On'}\nrewrite_upload_target: yes\ntls: {mode: acme, acme: {domains: [y, n, 'null', '~', '123']}}",
		"retry_body_limit: 1073741825\nshutdown_grace: 1h0m0.5s\noauth: {refresh_before: 59m59.999999999s}\naccounts: {idle_evict: 2562047h}",
		"vault: {address: 'https://[::1]:8200/', auth: {method: kubernetes, role: 'r: \"x\"', mount_path: k8s/prod}}\ntoken_store: {type: vault, path: ''}\ncredentials: {source: vault, id_key: '#id'}",
		"listen: '[::1]:0'\npublic_url: 'HTTPS://Example.ORG:443//'\nupstream: 'http://127.0.0.1:1'\ninbound: {shared_secret_header: X-A|b~, shared_secret_file: \"\\t/s p a c e\"}\ntls: {mode: files, cert_file: \"\u00e9\", key_file: '0x10'}",
	} {
		c, err := Parse([]byte(data), getenv)
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		roundTrip(t, c, getenv)
	}
}
