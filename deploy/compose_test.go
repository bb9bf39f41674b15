package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The docker compose deployment beside OnTrack's (doubtfire-deploy,
// production/docker-compose.yml): the names below are OnTrack's.
const (
	composeDir     = "compose"
	composeFile    = "docker-compose.panopto.yml"
	ontrackBacknet = "backnet" // OnTrack's internal network: apiserver, pdfgen, the database
	ontrackProxy   = "proxy"   // OnTrack's nginx
	publicPort     = "9128"
	secretsDir     = "/run/secrets/"
)

// composeService is the part of a compose service these tests read. Short
// and long syntaxes are kept as any and read by the helpers below.
type composeService struct {
	Build       any               `yaml:"build"`
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	EnvFile     any               `yaml:"env_file"`
	Environment map[string]string `yaml:"environment"`
	Secrets     []any             `yaml:"secrets"`
	Volumes     []any             `yaml:"volumes"`
	Networks    any               `yaml:"networks"`
	Ports       []any             `yaml:"ports"`
	NetworkMode string            `yaml:"network_mode"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn any    `yaml:"depends_on"`
	Restart   string `yaml:"restart"`
	ReadOnly  bool   `yaml:"read_only"`
}

type composeProject struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]*struct {
		Internal bool `yaml:"internal"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
	Secrets map[string]*struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

// exampleConfig is the part of config.example.yaml the compose wiring
// depends on, read as plain YAML: whether the whole file is valid is the
// binary's to say (TestComposeBehindNginx runs its check).
type exampleConfig struct {
	Listen       string `yaml:"listen"`
	PublicListen string `yaml:"public_listen"`
	PublicURL    string `yaml:"public_url"`
	Inbound      struct {
		SharedSecretFile string   `yaml:"shared_secret_file"`
		AllowedHosts     []string `yaml:"allowed_hosts"`
	} `yaml:"inbound"`
	Accounts struct {
		Mode          string   `yaml:"mode"`
		ReturnTo      []string `yaml:"return_to"`
		IdentityClaim string   `yaml:"identity_claim"`
	} `yaml:"accounts"`
	TokenStore struct {
		Type string `yaml:"type"`
		Path string `yaml:"path"`
	} `yaml:"token_store"`
}

// composeFiles are the shipped files of deploy/compose, by base name.
type composeFiles map[string][]byte

func loadCompose(t *testing.T) composeFiles {
	t.Helper()
	files := composeFiles{}
	for _, name := range []string{composeFile, "nginx-panopto.conf", "config.example.yaml", "ontrack.env", "panopto-client.env.example"} {
		b, err := os.ReadFile(filepath.Join(composeDir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	return files
}

// stringList reads a compose list in short syntax (strings) or long
// syntax (mappings), returning the names (or sources) and the mappings.
func stringList(v any, key string) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			switch y := e.(type) {
			case string:
				out = append(out, y)
			case map[string]any:
				out = append(out, fmt.Sprint(y[key]))
			}
		}
	case map[string]any:
		for k := range x {
			out = append(out, k)
		}
		slices.Sort(out)
	case string:
		out = append(out, x)
	}
	return out
}

// mount is one entry of a service's volumes, short syntax only.
type mount struct{ source, target, mode string }

func mounts(s composeService) []mount {
	var out []mount
	for _, v := range s.Volumes {
		str, _ := v.(string)
		f := strings.Split(str, ":")
		m := mount{source: f[0]}
		if len(f) > 1 {
			m.target = f[1]
		}
		if len(f) > 2 {
			m.mode = f[2]
		}
		out = append(out, m)
	}
	return out
}

// mountAt returns the mount holding p (the longest target that is p or a
// parent of it).
func mountAt(s composeService, p string) (mount, bool) {
	var best mount
	for _, m := range mounts(s) {
		t := strings.TrimRight(m.target, "/")
		if (p == t || strings.HasPrefix(p, t+"/")) && len(t) > len(best.target) {
			best = m
		}
	}
	return best, best.target != ""
}

// checkCompose lists what is wrong with the compose files: the layout the
// README's "Deploying beside OnTrack (docker compose)" describes.
func checkCompose(files composeFiles) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	var p composeProject
	if err := yaml.Unmarshal(files[composeFile], &p); err != nil {
		return []string{fmt.Sprintf("%s: %v", composeFile, err)}
	}
	var cfg exampleConfig
	if err := yaml.Unmarshal(files["config.example.yaml"], &cfg); err != nil {
		return []string{fmt.Sprintf("config.example.yaml: %v", err)}
	}
	sc, ok := p.Services[sidecarName]
	if !ok {
		return []string{fmt.Sprintf("no service %s", sidecarName)}
	}

	// No service of this file publishes a port on the host.
	for name, s := range p.Services {
		if len(s.Ports) > 0 {
			bad("service %s publishes ports %v; nothing may be published (OnTrack's nginx is the way in)", name, s.Ports)
		}
		if s.NetworkMode != "" {
			bad("service %s sets network_mode %s", name, s.NetworkMode)
		}
	}

	// Built from this repository's Dockerfile, started as the image starts.
	ctx := stringList([]any{sc.Build}, "context")
	if sc.Build == nil || len(ctx) != 1 || ctx[0] == "" || ctx[0] == "<nil>" {
		bad("%s is not built from a context (this repository's Dockerfile): build %v", sidecarName, sc.Build)
	}
	if len(sc.Command) < 3 || sc.Command[0] != "serve" || sc.Command[1] != "-config" {
		bad("%s command %v, want serve -config FILE", sidecarName, sc.Command)
	}
	if sc.Restart != "on-failure" {
		bad("%s restart %q, want on-failure", sidecarName, sc.Restart)
	}

	// Networks: OnTrack's internal backnet, and one with egress for Panopto.
	nets := stringList(sc.Networks, "")
	if !slices.Contains(nets, ontrackBacknet) {
		bad("%s is not on %s: apiserver cannot reach it", sidecarName, ontrackBacknet)
	}
	if n := p.Networks[ontrackBacknet]; n != nil && !n.Internal {
		bad("networks.%s is not internal: merged with OnTrack's file it would give apiserver and the database egress", ontrackBacknet)
	}
	var egress []string
	for _, n := range nets {
		if n == ontrackBacknet {
			continue
		}
		def, declared := p.Networks[n]
		switch {
		case !declared:
			bad("%s joins network %s, which this file does not declare", sidecarName, n)
		case def != nil && def.Internal:
		default:
			egress = append(egress, n)
		}
	}
	if len(egress) == 0 {
		bad("%s has no network with egress: it cannot reach Panopto", sidecarName)
	}

	// Listeners: listen for apiserver, public_listen for nginx, on every
	// interface of the container; public_url has the /panopto path.
	lhost, lport, err := net.SplitHostPort(cfg.Listen)
	if err != nil || lport != listenPort || lhost != "0.0.0.0" {
		bad("config listen %q, want 0.0.0.0:%s (apiserver calls http://%s:%s)", cfg.Listen, listenPort, sidecarName, listenPort)
	}
	if _, pport, err := net.SplitHostPort(cfg.PublicListen); err != nil || pport != publicPort {
		bad("config public_listen %q, want port %s", cfg.PublicListen, publicPort)
	}
	pu, err := url.Parse(cfg.PublicURL)
	if err != nil || pu.Scheme != "https" || pu.Path != "/panopto" {
		bad("config public_url %q, want https://<OnTrack's host>/panopto", cfg.PublicURL)
	}
	if cfg.Accounts.Mode != "login" || cfg.Accounts.IdentityClaim == "" || len(cfg.Accounts.ReturnTo) == 0 {
		bad("config accounts %+v, want mode login with identity_claim and return_to", cfg.Accounts)
	}
	for _, rt := range cfg.Accounts.ReturnTo {
		if pu != nil && strings.HasPrefix(rt, cfg.PublicURL+"/") {
			bad("config return_to %s is under public_url: the browser would come back to the sidecar", rt)
		}
	}
	if !slices.Contains(cfg.Inbound.AllowedHosts, sidecarName) {
		bad("config inbound.allowed_hosts %v lacks %s, the Host apiserver sends", cfg.Inbound.AllowedHosts, sidecarName)
	}

	// The healthcheck runs the binary against listen.
	hc := sc.Healthcheck
	switch {
	case hc == nil || len(hc.Test) < 3:
		bad("%s has no healthcheck", sidecarName)
	case hc.Test[0] != "CMD" || hc.Test[1] != "/usr/local/bin/panopto-sidecar" || hc.Test[2] != "healthcheck":
		bad("%s healthcheck %v, want [CMD /usr/local/bin/panopto-sidecar healthcheck ...]", sidecarName, hc.Test)
	default:
		addr := "http://127.0.0.1:9127" // healthcheck's default
		if i := slices.Index(hc.Test, "-addr"); i > 0 && i+1 < len(hc.Test) {
			addr = hc.Test[i+1]
		}
		if u, err := url.Parse(addr); err != nil || u.Port() != lport || u.Hostname() != "127.0.0.1" {
			bad("%s healthcheck checks %s, want http://127.0.0.1:%s (listen, from inside)", sidecarName, addr, lport)
		}
	}

	// The inbound secret is a compose secret, named by the config.
	var secret string
	for _, s := range stringList(sc.Secrets, "source") {
		if def := p.Secrets[s]; def != nil && def.File != "" {
			secret = s
		} else {
			bad("secret %s is not declared with a file", s)
		}
	}
	if secret == "" || cfg.Inbound.SharedSecretFile != secretsDir+secret {
		bad("config inbound.shared_secret_file %q, want %s%s (the compose secret)", cfg.Inbound.SharedSecretFile, secretsDir, secret)
	}
	if f := sc.Environment["PANOPTO_SIDECAR_AUTH_FILE"]; f != cfg.Inbound.SharedSecretFile {
		bad("%s PANOPTO_SIDECAR_AUTH_FILE %q, want %q (so `panopto-sidecar status` works in the container)", sidecarName, f, cfg.Inbound.SharedSecretFile)
	}

	// Mounts: the config directory read-only at -config's directory, the
	// token store on a named volume.
	if len(sc.Command) >= 3 {
		cfgPath := sc.Command[2]
		m, ok := mountAt(sc, cfgPath)
		switch {
		case !ok:
			bad("-config %s is on no mount", cfgPath)
		case m.target != path.Dir(cfgPath):
			bad("-config %s is mounted as %s: mount its directory, or an edited config.yaml never reaches the container", cfgPath, m.target)
		case m.mode != "ro":
			bad("the config mount %s is not read-only", m.target)
		}
	}
	store := cfg.TokenStore.Path
	if !path.IsAbs(store) {
		store = path.Join(stateDir, store) // the image's WORKDIR
	}
	if cfg.TokenStore.Type != "vault" {
		m, ok := mountAt(sc, store)
		if _, named := p.Volumes[m.source]; !ok || !named {
			bad("token_store.path %s is not on a named volume", store)
		}
	}

	// OnTrack's nginx gets the location block and starts after the sidecar.
	px := p.Services[ontrackProxy]
	var nginxConf string
	for _, m := range mounts(px) {
		if strings.HasSuffix(m.source, "/deploy/compose/nginx-panopto.conf") {
			nginxConf = m.target
		}
	}
	if nginxConf == "" {
		bad("service %s does not mount nginx-panopto.conf", ontrackProxy)
	}
	if !slices.Contains(stringList(px.DependsOn, ""), sidecarName) {
		bad("service %s does not depend on %s: nginx resolves it when it starts", ontrackProxy, sidecarName)
	}

	// nginx reaches public_listen under public_url's path, never listen.
	conf := string(files["nginx-panopto.conf"])
	loc := regexp.MustCompile(`(?m)^\s*location\s+(\S+)\s*\{`).FindAllStringSubmatch(conf, -1)
	if len(loc) != 1 || pu == nil || loc[0][1] != pu.Path+"/" {
		bad("nginx-panopto.conf locations %v, want one: %s/", loc, cfg.PublicURL)
	}
	pass := regexp.MustCompile(`(?m)^\s*proxy_pass\s+(\S+);`).FindAllStringSubmatch(conf, -1)
	if len(pass) != 1 || pass[0][1] != "http://"+sidecarName+":"+publicPort+"/" {
		bad("nginx-panopto.conf proxy_pass %v, want http://%s:%s/", pass, sidecarName, publicPort)
	}
	if regexp.MustCompile(`(?m)^[^#]*\b` + listenPort + `\b`).MatchString(conf) {
		bad("nginx-panopto.conf names port %s, the sidecar's main listener", listenPort)
	}

	// OnTrack's env: the sidecar's address on backnet and the secret.
	env := map[string]string{}
	sc2 := bufio.NewScanner(bytes.NewReader(files["ontrack.env"]))
	for sc2.Scan() {
		if k, v, ok := strings.Cut(sc2.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	if env["PANOPTO_BASE_URL"] != "http://"+sidecarName+":"+lport {
		bad("ontrack.env PANOPTO_BASE_URL %q, want http://%s:%s", env["PANOPTO_BASE_URL"], sidecarName, lport)
	}
	if _, ok := env["PANOPTO_SIDECAR_SECRET"]; !ok {
		bad("ontrack.env has no PANOPTO_SIDECAR_SECRET")
	}
	for _, f := range stringList(sc.EnvFile, "path") {
		if !strings.HasSuffix(f, "panopto-client.env") {
			bad("%s env_file %s: want only panopto-client.env (never OnTrack's .env.production)", sidecarName, f)
		}
	}
	return problems
}

// TestComposeBesideOnTrack: docker-compose.panopto.yml, merged with
// OnTrack's production file, puts the sidecar on OnTrack's internal backnet
// and on a network with egress, publishes nothing, takes the shared secret
// as a compose secret, keeps the token store on a named volume, runs the
// binary's healthcheck, and hands nginx the location block. Each rule is
// shown to bite on a broken copy.
func TestComposeBesideOnTrack(t *testing.T) {
	files := loadCompose(t)
	for _, p := range checkCompose(files) {
		t.Error(p)
	}

	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"published port", composeFile, "    restart: on-failure\n", "    restart: on-failure\n    ports: [\"9127:9127\"]\n", "publishes ports"},
		{"not on backnet", composeFile, "      - backnet          #", "      - frontnet          #", "is not on backnet"},
		{"backnet with egress", composeFile, "    internal: true   #", "    internal: false   #", "is not internal"},
		{"no egress", composeFile, "  panopto-egress: {}\n", "  panopto-egress: {internal: true}\n", "no network with egress"},
		{"no healthcheck", composeFile, `"healthcheck", "-addr"`, `"status", "-addr"`, "healthcheck"},
		{"healthcheck elsewhere", composeFile, `"http://127.0.0.1:9127"]`, `"http://127.0.0.1:9128"]`, "healthcheck checks"},
		{"restart", composeFile, "restart: on-failure\n", "restart: always\n", "want on-failure"},
		{"secret in config", "config.example.yaml", "/run/secrets/panopto_sidecar_secret", "/etc/panopto-sidecar/secret", "the compose secret"},
		{"config file mount", composeFile, "./panopto:/etc/panopto-sidecar:ro", "./panopto/config.yaml:/etc/panopto-sidecar/config.yaml:ro", "mount its directory"},
		{"token store off the volume", "config.example.yaml", "path: /var/lib/panopto-sidecar/panopto-token.json", "path: /tmp/panopto-token.json", "not on a named volume"},
		{"nginx to listen", "nginx-panopto.conf", "panopto-sidecar:9128/", "panopto-sidecar:9127/", "names port 9127"},
		{"nginx path", "nginx-panopto.conf", "location /panopto/ {", "location /sidecar/ {", "want one"},
		{"no allowed host", "config.example.yaml", "allowed_hosts: [panopto-sidecar]", "allowed_hosts: []", "lacks panopto-sidecar"},
		{"base url", "ontrack.env", "PANOPTO_BASE_URL=http://panopto-sidecar:9127", "PANOPTO_BASE_URL=http://127.0.0.1:9127", "PANOPTO_BASE_URL"},
		{"return_to under the prefix", "config.example.yaml", "return_to: [https://ontrack.example/]", "return_to: [https://ontrack.example/panopto/done]", "under public_url"},
	} {
		broken := composeFiles{}
		for k, v := range files {
			broken[k] = v
		}
		if !bytes.Contains(files[tc.file], []byte(tc.old)) {
			t.Errorf("%s: %s no longer contains %q; update the test", tc.name, tc.file, tc.old)
			continue
		}
		broken[tc.file] = bytes.Replace(files[tc.file], []byte(tc.old), []byte(tc.new), 1)
		got := checkCompose(broken)
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
			t.Errorf("%s: the check did not notice (want %q), problems: %q", tc.name, tc.want, got)
		}
	}
}
