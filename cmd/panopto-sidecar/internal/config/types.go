// Package config is the config.yaml schema of panopto-sidecar: parsing with
// unknown keys rejected, defaults, and validation that reports every problem
// with its key path.
package config

import "time"

// Config is one immutable, validated snapshot of config.yaml. Durations are
// written in YAML as Go durations ("5m", "30s").
type Config struct {
	Listen              string      `yaml:"listen"`
	PublicListen        string      `yaml:"public_listen"`    // "" (off) or host:port serving only the student's login pages
	PublicMaxConns      int         `yaml:"public_max_conns"` // connections public_listen holds open at once, default 1024
	PublicURL           string      `yaml:"public_url"`
	Upstream            string      `yaml:"upstream"`
	UpstreamCAFile      string      `yaml:"upstream_ca_file"` // extra PEM roots for the upstream, besides the system's
	OAuth               OAuth       `yaml:"oauth"`
	Vault               Vault       `yaml:"vault"`
	Credentials         Credentials `yaml:"credentials"`
	TokenStore          TokenStore  `yaml:"token_store"`
	Routes              []Route     `yaml:"routes"`
	RoutesMatch         RoutesMatch `yaml:"routes_match"` // case_insensitive (as Panopto's IIS) | exact
	Log                 Log         `yaml:"log"`
	ShutdownGrace       Duration    `yaml:"shutdown_grace"`
	TLS                 TLS         `yaml:"tls"`
	RewriteUploadTarget bool        `yaml:"rewrite_upload_target"`
	RetryBodyLimit      ByteSize    `yaml:"retry_body_limit"` // request bodies up to this size are buffered so a 401 can be retried; default 1MiB
	Accounts            Accounts    `yaml:"accounts"`
	Inbound             Inbound     `yaml:"inbound"`
	Timeouts            Timeouts    `yaml:"timeouts"`
	Uploads             Uploads     `yaml:"uploads"`

	// Secrets are read from the files named above by Load; not in the file.
	Secrets Secrets `yaml:"-"`
}

type OAuth struct {
	Grant         Grant      `yaml:"grant"`          // authorization_code | password
	AuthorizeURL  string     `yaml:"authorize_url"`  // default {upstream}/Panopto/oauth2/connect/authorize
	TokenURL      string     `yaml:"token_url"`      // default {upstream}/Panopto/oauth2/connect/token
	RevocationURL string     `yaml:"revocation_url"` // default {upstream}/Panopto/oauth2/connect/revocation
	Scopes        []string   `yaml:"scopes"`         // default [openid, api, offline_access]
	ClientAuth    ClientAuth `yaml:"client_auth"`    // basic | body
	RefreshBefore Duration   `yaml:"refresh_before"` // default 5m
	Issuer        string     `yaml:"issuer"`         // OpenID issuer of id_tokens, default {upstream}/Panopto/oauth2
	// Password grant (grant: password): the Panopto user's name and password
	// come from the environment (PANOPTO_USERNAME, PANOPTO_PASSWORD) or from
	// Vault (credentials.username_key / password_key) when credentials.source is vault.
}

type Vault struct {
	Address       string    `yaml:"address"`   // default $VAULT_ADDR, else http://127.0.0.1:8200
	Namespace     string    `yaml:"namespace"` // default $VAULT_NAMESPACE
	CACert        string    `yaml:"ca_cert"`
	TLSServerName string    `yaml:"tls_server_name"`
	Auth          VaultAuth `yaml:"auth"`
	Mount         string    `yaml:"mount"` // KV v2 mount, default secret
}

// VaultAuth accepts either a bare method name (`auth: token`) or a mapping
// with the method's settings; see UnmarshalYAML.
type VaultAuth struct {
	Method       VaultAuthMethod `yaml:"method"`         // token | approle | kubernetes
	TokenFile    string          `yaml:"token_file"`     // token: read (and re-read on change) instead of $VAULT_TOKEN
	RoleIDFile   string          `yaml:"role_id_file"`   // approle
	SecretIDFile string          `yaml:"secret_id_file"` // approle
	Role         string          `yaml:"role"`           // kubernetes
	JWTFile      string          `yaml:"jwt_file"`       // kubernetes, default /var/run/secrets/kubernetes.io/serviceaccount/token
	MountPath    string          `yaml:"mount_path"`     // auth mount, default approle / kubernetes
}

type Credentials struct {
	Source       CredentialsSource `yaml:"source"`        // env | vault
	Path         string            `yaml:"path"`          // vault: KV v2 path, default panopto/client
	IDKey        string            `yaml:"id_key"`        // default client_id
	SecretKey    string            `yaml:"secret_key"`    // default client_secret
	UsernameKey  string            `yaml:"username_key"`  // password grant, default username
	PasswordKey  string            `yaml:"password_key"`  // password grant, default password
	AppKeyKey    string            `yaml:"app_key_key"`   // accounts.mode idp, default app_key
	PollInterval Duration          `yaml:"poll_interval"` // vault: how often to check for a new version, default 30s

	// WebhookSecretKey: with uploads.webhook_url and source vault, the key
	// of the webhook signing secret (default webhook_secret); with source
	// env the secret is $PANOPTO_SIDECAR_WEBHOOK_SECRET.
	WebhookSecretKey string `yaml:"webhook_secret_key"`
}

type TokenStore struct {
	Type TokenStoreType `yaml:"type"` // file | vault
	Path string         `yaml:"path"` // file: path (default panopto-token.json); vault: KV v2 path (default panopto/token)
}

type Route struct {
	Prefix string `yaml:"prefix"`
	Inject bool   `yaml:"inject"`
}

type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // auto | text | json
}

type TLS struct {
	Mode     TLSMode `yaml:"mode"` // none | files | acme
	CertFile string  `yaml:"cert_file"`
	KeyFile  string  `yaml:"key_file"`
	ACME     ACME    `yaml:"acme"`
}

type ACME struct {
	Domains     []string `yaml:"domains"`
	Email       string   `yaml:"email"`
	Directory   string   `yaml:"directory"`
	CARoots     []string `yaml:"ca_roots"`
	Storage     string   `yaml:"storage"`
	HTTPPort    int      `yaml:"http_port"`
	TLSALPNPort int      `yaml:"tls_alpn_port"`
}

type Accounts struct {
	Mode      AccountsMode `yaml:"mode"`       // off | idp | login
	Header    string       `yaml:"header"`     // default X-Panopto-User
	Provider  string       `yaml:"provider"`   // idp: the identity provider's name in Panopto
	MaxCache  int          `yaml:"max_cache"`  // LRU size of grants held in memory, default 1000
	IdleEvict Duration     `yaml:"idle_evict"` // drop an account's grant from memory after this idle time, default 1h
	// Keep-alive: refresh stored grants not refreshed for KeepAlive (0: off),
	// at most KeepAliveRate refreshes per second (default 2).
	KeepAlive     Duration `yaml:"keep_alive"`
	KeepAliveRate float64  `yaml:"keep_alive_rate"`
	// Per-student connection (mode login).
	ReturnTo         []string `yaml:"return_to"`         // URL prefixes a login may return the browser to
	TicketTTL        Duration `yaml:"ticket_ttl"`        // how long a login link works, default 10m
	IdentityClaim    string   `yaml:"identity_claim"`    // login: sub | preferred_username | email | upn | none (required)
	IdentityTemplate string   `yaml:"identity_template"` // what the claim must equal, default {account}
}

// Inbound controls who may use the sidecar when it listens beyond loopback.
type Inbound struct {
	AllowUnauthenticated bool   `yaml:"allow_unauthenticated"`
	SharedSecretFile     string `yaml:"shared_secret_file"`   // required header value, read from this file
	SharedSecretHeader   string `yaml:"shared_secret_header"` // default X-Sidecar-Auth
	ClientCAFile         string `yaml:"client_ca_file"`       // mTLS: client certificates must chain to this
	// AllowedHosts are further names a request's Host may carry on listen
	// (beside loopback names, the listen address and public_url's host):
	// "name" with any port, "name:port" with that port only.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

type Timeouts struct {
	ReadHeader      Duration `yaml:"read_header"`      // default 10s
	Idle            Duration `yaml:"idle"`             // default 120s
	UpstreamHeaders Duration `yaml:"upstream_headers"` // time to first response byte from upstream, default 60s
	Dial            Duration `yaml:"dial"`             // default 10s
	TokenEndpoint   Duration `yaml:"token_endpoint"`   // one token call, default 15s
}

// Duration is a time.Duration written as "5m" in YAML.
type Duration time.Duration

// ByteSize is a size written as 1048576, "1MiB", "512KiB" or "1MB" in YAML.
type ByteSize int64

// Uploads shape POST /-/uploads: the S3 part size (Panopto takes 5-25 MiB)
// and how many parts are in flight; an upload holds up to
// concurrency + 1 part buffers, all of them taken from one budget of
// memory_limit bytes shared by every upload. An upload that gets no buffer
// within queue_timeout is answered 503 uploads_busy.
type Uploads struct {
	PartSize     ByteSize `yaml:"part_size"`     // default 16MiB
	Concurrency  int      `yaml:"concurrency"`   // default 2
	MemoryLimit  ByteSize `yaml:"memory_limit"`  // default 256MiB, at least 2 * part_size
	QueueTimeout Duration `yaml:"queue_timeout"` // default 15m

	// After Panopto accepted an upload it is watched to a final state for
	// at most WatchFor (default 24h); a finished upload stays readable by
	// GET /-/uploads/{id} for Retention (default 720h), then is deleted.
	// WebhookURL ("": no webhooks) receives the signed events.
	WatchFor   Duration `yaml:"watch_for"`
	Retention  Duration `yaml:"retention"`
	WebhookURL string   `yaml:"webhook_url"`
}
