package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestChanged(t *testing.T) {
	base := Config{
		Listen:   "127.0.0.1:9127",
		Upstream: "https://uni.hosted.panopto.com",
		OAuth:    OAuth{RefreshBefore: Duration(5 * time.Minute), Scopes: []string{"openid", "api"}},
		Routes:   []Route{{Prefix: "/Panopto/api/", Inject: true}},
		Log:      Log{Level: "info", Format: "json"},
		Vault:    Vault{Auth: VaultAuth{Method: VaultAuthMethod("token"), TokenFile: "/run/vault/token"}},
		Inbound:  Inbound{SharedSecretFile: "/run/secrets/sidecar"},
	}
	clone := func(c Config) Config {
		c.OAuth.Scopes = slices.Clone(c.OAuth.Scopes)
		c.Routes = slices.Clone(c.Routes)
		return c
	}
	cases := []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"several, in schema order", func(c *Config) {
			c.Log.Level = "debug"
			c.Routes = append(c.Routes, Route{Prefix: "/Panopto/Pages/", Inject: true})
			c.OAuth.RefreshBefore = Duration(time.Minute)
		}, []string{"oauth.refresh_before", "routes", "log.level"}},
		{"one field of a list element", func(c *Config) { c.Routes[0].Inject = false }, []string{"routes"}},
		{"a list's order", func(c *Config) { c.OAuth.Scopes = []string{"api", "openid"} }, []string{"oauth.scopes"}},
		{"nested mapping", func(c *Config) { c.Vault.Auth.TokenFile = "/elsewhere" }, []string{"vault.auth.token_file"}},
		{"secret file path", func(c *Config) { c.Inbound.SharedSecretFile = "/run/secrets/other" }, []string{"inbound.shared_secret_file"}},
		{"secret file content", func(c *Config) { c.Secrets.SharedSecret = "rotated" }, []string{"inbound.shared_secret_file"}},
		{"secret file path and content", func(c *Config) {
			c.Inbound.SharedSecretFile = "/run/secrets/other"
			c.Secrets.SharedSecret = "rotated"
		}, []string{"inbound.shared_secret_file"}},
		{"secret content after other keys", func(c *Config) {
			c.Log.Level = "debug"
			c.Secrets.SharedSecret = "rotated"
		}, []string{"log.level", "inbound.shared_secret_file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur, next := clone(base), clone(base)
			tc.edit(&next)
			if got := Changed(&cur, &next); !slices.Equal(got, tc.want) {
				t.Errorf("Changed = %q, want %q", got, tc.want)
			}
			if got := Changed(&next, &cur); !slices.Equal(got, tc.want) {
				t.Errorf("Changed the other way = %q, want %q", got, tc.want)
			}
		})
	}
	if got := Changed(nil, &base); got != nil {
		t.Errorf("Changed(nil, cfg) = %q", got)
	}
}

// TestChangedSeesEverySetting: changing any one setting of the schema is
// reported under that setting's key path, and nothing else is; a field
// added to types.go is covered without a change here.
func TestChangedSeesEverySetting(t *testing.T) {
	var paths []string
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			key := yamlKey(v.Type().Field(i))
			if key == "" {
				continue
			}
			p, f := join(path, key), v.Field(i)
			if f.Kind() == reflect.Struct {
				walk(f, p)
				continue
			}
			var cur, next Config
			setNonZero(t, p, fieldAt(&next, p))
			if got := Changed(&cur, &next); !slices.Equal(got, []string{p}) {
				t.Errorf("changing %s: Changed = %q", p, got)
			}
			paths = append(paths, p)
		}
	}
	walk(reflect.ValueOf(Config{}), "")
	t.Logf("%d settings", len(paths))
	if len(paths) < 40 {
		t.Errorf("only %d settings walked: %q", len(paths), paths)
	}
}

// fieldAt returns the settable field of c at the key path p.
func fieldAt(c *Config, p string) reflect.Value {
	v := reflect.ValueOf(c).Elem()
	for _, key := range strings.Split(p, ".") {
		t := v.Type()
		for i := range t.NumField() {
			if yamlKey(t.Field(i)) == key {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

func setNonZero(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Float64:
		v.SetFloat(1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	default:
		t.Fatalf("%s: no non-zero value for a %s", path, v.Kind())
	}
}
