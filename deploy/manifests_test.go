package deploy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	manifestDir  = "kubernetes"
	sidecarName  = "panopto-sidecar"
	ontrackName  = "ontrack"
	configMap    = "panopto-sidecar-config"
	stateDir     = "/var/lib/panopto-sidecar"
	listenPort   = "9127"
	serviceAcct  = "ontrack"
	defaultJWT   = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	vaultAudient = "vault"
)

// The parts of Kubernetes objects these tests read.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Data                         map[string]string `yaml:"data"`
	AutomountServiceAccountToken *bool             `yaml:"automountServiceAccountToken"`
	Spec                         struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName            string      `yaml:"serviceAccountName"`
	AutomountServiceAccountToken  *bool       `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []container `yaml:"initContainers"`
	Containers                    []container `yaml:"containers"`
	Volumes                       []volume    `yaml:"volumes"`
}

type container struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	Command       []string `yaml:"command"`
	Args          []string `yaml:"args"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Env           []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		RunAsUser                *int  `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	EmptyDir  *struct{} `yaml:"emptyDir"`
	Projected *struct {
		Sources []struct {
			ServiceAccountToken *struct {
				Audience string `yaml:"audience"`
				Path     string `yaml:"path"`
			} `yaml:"serviceAccountToken"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

// sidecarConfig is the part of config.yaml the pod wiring depends on.
// Whether the whole file is valid is decided by the binary's own check.
type sidecarConfig struct {
	Listen        string `yaml:"listen"`
	ShutdownGrace string `yaml:"shutdown_grace"`
	Vault         struct {
		Auth struct {
			Method  string `yaml:"method"`
			Role    string `yaml:"role"`
			JWTFile string `yaml:"jwt_file"`
		} `yaml:"auth"`
		Mount string `yaml:"mount"`
	} `yaml:"vault"`
	Credentials struct {
		Source string `yaml:"source"`
		Path   string `yaml:"path"`
	} `yaml:"credentials"`
	TokenStore struct {
		Type string `yaml:"type"`
		Path string `yaml:"path"`
	} `yaml:"token_store"`
	TLS struct {
		Mode string `yaml:"mode"`
		ACME struct {
			Storage string `yaml:"storage"`
		} `yaml:"acme"`
	} `yaml:"tls"`
}

// manifests reads every YAML document of every file in kubernetes/.
type manifests struct {
	files   []string            // base names of the *.yaml files
	objects map[string]object   // kind/name -> object
	raw     map[string][]byte   // base name -> content
	docs    map[string][]object // base name -> its documents
}

func load(t *testing.T) *manifests {
	t.Helper()
	entries, err := os.ReadDir(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{objects: map[string]object{}, raw: map[string][]byte{}, docs: map[string][]object{}}
	for _, e := range entries {
		name := e.Name()
		data, err := os.ReadFile(filepath.Join(manifestDir, name))
		if err != nil {
			t.Fatal(err)
		}
		m.raw[name] = data
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue
		}
		m.files = append(m.files, name)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var node yaml.Node
			err := dec.Decode(&node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var o object
			if err := node.Decode(&o); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if o.Kind == "" {
				continue // an empty document
			}
			m.docs[name] = append(m.docs[name], o)
			if o.Kind == "Kustomization" {
				continue
			}
			key := o.Kind + "/" + o.Metadata.Name
			if _, dup := m.objects[key]; dup {
				t.Errorf("%s: %s defined twice", name, key)
			}
			m.objects[key] = o
		}
	}
	return m
}

func (m *manifests) get(t *testing.T, kind, name string) object {
	t.Helper()
	o, ok := m.objects[kind+"/"+name]
	if !ok {
		t.Fatalf("no %s %s in %s/", kind, name, manifestDir)
	}
	return o
}

func (m *manifests) pod(t *testing.T) podSpec {
	t.Helper()
	return m.get(t, "Deployment", ontrackName).Spec.Template.Spec
}

func (m *manifests) config(t *testing.T) (string, sidecarConfig) {
	t.Helper()
	text, ok := m.get(t, "ConfigMap", configMap).Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", configMap)
	}
	var c sidecarConfig
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("config.yaml in the ConfigMap: %v", err)
	}
	return text, c
}

func find(cs []container, name string) *container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func (m *manifests) sidecar(t *testing.T) *container {
	t.Helper()
	c := find(m.pod(t).InitContainers, sidecarName)
	if c == nil {
		t.Fatalf("%s is not an init container of Deployment %s", sidecarName, ontrackName)
	}
	return c
}

// mountFor returns the volume mounted at the longest mount path holding p.
func mountFor(t *testing.T, pod podSpec, c *container, p string) (volume, string, bool) {
	t.Helper()
	best := ""
	var name, sub string
	for _, vm := range c.VolumeMounts {
		mp := strings.TrimRight(vm.MountPath, "/")
		if (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) > len(best) {
			best, name, sub = mp, vm.Name, vm.SubPath
		}
	}
	if best == "" {
		return volume{}, "", false
	}
	if sub != "" {
		t.Errorf("%s is mounted with subPath %q: ConfigMap and token updates never reach a subPath mount", best, sub)
	}
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v, strings.TrimPrefix(strings.TrimPrefix(p, best), "/"), true
		}
	}
	t.Fatalf("volume %q mounted at %s is not defined", name, best)
	return volume{}, "", false
}

// dockerfile is the parsed ../Dockerfile: instructions per stage.
type stage struct {
	from  string
	instr [][2]string // instruction, arguments
}

func dockerfile(t *testing.T) []stage {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var stages []stage
	for _, l := range lines {
		instr, args, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			stages = append(stages, stage{from: args})
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", instr)
		}
		s := &stages[len(stages)-1]
		s.instr = append(s.instr, [2]string{instr, strings.TrimSpace(args)})
	}
	return stages
}

func (s stage) all(instr string) []string {
	var out []string
	for _, i := range s.instr {
		if i[0] == instr {
			out = append(out, i[1])
		}
	}
	return out
}

func (s stage) last(instr string) string {
	a := s.all(instr)
	if len(a) == 0 {
		return ""
	}
	return a[len(a)-1]
}

// execForm parses ["a", "b"] (JSON array form).
func execForm(t *testing.T, what, s string) []string {
	t.Helper()
	var out []string
	if err := yaml.Unmarshal([]byte(s), &out); err != nil || !strings.HasPrefix(strings.TrimSpace(s), "[") {
		t.Fatalf("Dockerfile %s %q is not in exec form", what, s)
	}
	return out
}

// binaryPath is where the final image holds the binary: its ENTRYPOINT.
func binaryPath(t *testing.T) string {
	t.Helper()
	st := dockerfile(t)
	ep := execForm(t, "ENTRYPOINT", st[len(st)-1].last("ENTRYPOINT"))
	if len(ep) != 1 {
		t.Fatalf("ENTRYPOINT %v: want just the binary", ep)
	}
	return ep[0]
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	m := load(t)
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(m.raw["kustomization.yaml"], &k); err != nil {
		t.Fatal(err)
	}
	for _, f := range m.files {
		if f != "kustomization.yaml" && !slices.Contains(k.Resources, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
	for _, r := range k.Resources {
		if !slices.Contains(m.files, r) {
			t.Errorf("kustomization.yaml lists %s, which does not exist", r)
		}
	}
	for name, docs := range m.docs {
		for _, o := range docs {
			if o.APIVersion == "" || o.Metadata.Name == "" && o.Kind != "Kustomization" {
				t.Errorf("%s: a %s without apiVersion or metadata.name", name, o.Kind)
			}
			if o.Metadata.Namespace != "" {
				t.Errorf("%s: %s/%s sets a namespace; the manifests are namespace-less", name, o.Kind, o.Metadata.Name)
			}
		}
	}
	m.get(t, "ServiceAccount", serviceAcct)
	if sa := m.pod(t).ServiceAccountName; sa != serviceAcct {
		t.Errorf("pod runs as service account %q, want %q", sa, serviceAcct)
	}
}

func TestSidecarIsNative(t *testing.T) {
	m := load(t)
	pod := m.pod(t)
	sc := m.sidecar(t)
	if sc.RestartPolicy != "Always" {
		t.Errorf("%s restartPolicy = %q, want Always (a native sidecar)", sidecarName, sc.RestartPolicy)
	}
	if find(pod.Containers, sidecarName) != nil {
		t.Errorf("%s is also a regular container", sidecarName)
	}
	if find(pod.Containers, ontrackName) == nil {
		t.Errorf("no %s container", ontrackName)
	}
}

func TestProbes(t *testing.T) {
	m := load(t)
	sc := m.sidecar(t)
	_, cfg := m.config(t)
	bin := binaryPath(t)
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		t.Fatalf("listen %q: %v", cfg.Listen, err)
	}
	if port != listenPort {
		t.Errorf("listen port %s, want %s", port, listenPort)
	}
	loopback := host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()

	for _, p := range []struct {
		name  string
		probe *probe
	}{{"startupProbe", sc.StartupProbe}, {"livenessProbe", sc.LivenessProbe}, {"readinessProbe", sc.ReadinessProbe}} {
		switch {
		case p.probe == nil:
			t.Errorf("%s has no %s", sidecarName, p.name)
		case p.probe.HTTPGet != nil:
			// The kubelet sends httpGet probes to the pod IP.
			if loopback {
				t.Errorf("%s is httpGet, but the sidecar listens on %s, which the kubelet cannot reach", p.name, cfg.Listen)
			}
			if p.probe.HTTPGet.Path != "/-/healthz" && p.probe.HTTPGet.Path != "/-/ready" {
				t.Errorf("%s path %q", p.name, p.probe.HTTPGet.Path)
			}
			if got := p.probe.HTTPGet.Port; got != listenPort && got != mustAtoi(listenPort) && got != "sidecar" {
				t.Errorf("%s port %v, want %s", p.name, got, listenPort)
			}
		case p.probe.Exec != nil:
			// panopto-sidecar healthcheck GETs /-/healthz at -addr.
			cmd := p.probe.Exec.Command
			if len(cmd) < 2 || cmd[0] != bin || cmd[1] != "healthcheck" {
				t.Errorf("%s runs %v, want %s healthcheck", p.name, cmd, bin)
				continue
			}
			if i := slices.Index(cmd, "-addr"); i >= 0 && i+1 < len(cmd) {
				want := "http://" + net.JoinHostPort(host, port)
				if strings.TrimRight(cmd[i+1], "/") != want {
					t.Errorf("%s checks %s, want %s (the configured listen)", p.name, cmd[i+1], want)
				}
			} else if cfg.Listen != "127.0.0.1:"+listenPort {
				t.Errorf("%s uses healthcheck's default address, but listen is %s", p.name, cfg.Listen)
			}
		default:
			t.Errorf("%s is neither exec nor httpGet", p.name)
		}
	}
}

func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestResourcesAndSecurity(t *testing.T) {
	m := load(t)
	pod := m.pod(t)
	for _, c := range append(append([]container{}, pod.InitContainers...), pod.Containers...) {
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
			t.Errorf("container %s: cpu and memory requests needed", c.Name)
		}
		if c.Resources.Limits["memory"] == "" {
			t.Errorf("container %s: memory limit needed", c.Name)
		}
		if c.Image == "" {
			t.Errorf("container %s: no image", c.Name)
		}
	}
	sc := m.sidecar(t)
	s := sc.SecurityContext
	if s == nil {
		t.Fatalf("%s has no securityContext", sidecarName)
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(s.RunAsNonRoot) {
		t.Error("runAsNonRoot must be true")
	}
	if s.RunAsUser == nil || *s.RunAsUser != 65532 {
		t.Error("runAsUser must be 65532 (distroless nonroot)")
	}
	if !isTrue(s.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if !slices.Contains(s.Capabilities.Drop, "ALL") {
		t.Error("capabilities must drop ALL")
	}
	if s.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("seccompProfile %q, want RuntimeDefault", s.SeccompProfile.Type)
	}
}

func TestOnTrackUsesTheSidecar(t *testing.T) {
	m := load(t)
	_, cfg := m.config(t)
	c := find(m.pod(t).Containers, ontrackName)
	if c == nil {
		t.Fatalf("no %s container", ontrackName)
	}
	var got string
	for _, e := range c.Env {
		if e.Name == "PANOPTO_BASE_URL" {
			got = e.Value
		}
	}
	if want := "http://" + cfg.Listen; got != want {
		t.Errorf("PANOPTO_BASE_URL = %q, want %q", got, want)
	}
}

func TestMounts(t *testing.T) {
	m := load(t)
	pod := m.pod(t)
	sc := m.sidecar(t)
	_, cfg := m.config(t)

	// The config file the args name is the ConfigMap's key.
	i := slices.Index(sc.Args, "-config")
	if i < 0 || i+1 >= len(sc.Args) {
		t.Fatalf("%s args %v do not name -config", sidecarName, sc.Args)
	}
	cfgPath := sc.Args[i+1]
	v, key, ok := mountFor(t, pod, sc, cfgPath)
	switch {
	case !ok:
		t.Errorf("-config %s is on no mounted volume", cfgPath)
	case v.ConfigMap == nil || v.ConfigMap.Name != configMap:
		t.Errorf("-config %s is on volume %s, not ConfigMap %s", cfgPath, v.Name, configMap)
	case m.get(t, "ConfigMap", configMap).Data[key] == "":
		t.Errorf("ConfigMap %s has no key %q for -config %s", configMap, key, cfgPath)
	}

	// Everything the sidecar writes is on a writable emptyDir.
	v, _, ok = mountFor(t, pod, sc, stateDir)
	if !ok || v.EmptyDir == nil {
		t.Errorf("%s is not an emptyDir mount", stateDir)
	}
	writes := map[string]string{}
	if cfg.TokenStore.Type == "" || cfg.TokenStore.Type == "file" {
		p := cfg.TokenStore.Path
		if p == "" {
			p = "panopto-token.json"
		}
		writes["token_store.path"] = p
	}
	if cfg.TLS.Mode == "acme" {
		writes["tls.acme.storage"] = cfg.TLS.ACME.Storage
	}
	for k, p := range writes {
		if !path.IsAbs(p) {
			t.Errorf("%s %q is relative; in the pod it must be under %s", k, p, stateDir)
			continue
		}
		if v, _, ok := mountFor(t, pod, sc, p); !ok || v.EmptyDir == nil {
			t.Errorf("%s %s is not on a writable volume", k, p)
		}
	}

	// Vault's Kubernetes auth reads a service-account token the pod provides.
	if cfg.Vault.Auth.Method == "kubernetes" {
		jwt := cfg.Vault.Auth.JWTFile
		if jwt == "" {
			jwt = defaultJWT
		}
		v, key, ok := mountFor(t, pod, sc, jwt)
		switch {
		case ok && v.Projected != nil:
			var found bool
			for _, s := range v.Projected.Sources {
				if tok := s.ServiceAccountToken; tok != nil && tok.Path == key {
					found = true
					if tok.Audience != vaultAudient {
						t.Errorf("projected token audience %q, want %q (the Vault role's audience)", tok.Audience, vaultAudient)
					}
				}
			}
			if !found {
				t.Errorf("jwt_file %s is not a projected service-account token", jwt)
			}
		case !ok && jwt == defaultJWT:
			if a := pod.AutomountServiceAccountToken; a != nil && !*a {
				t.Errorf("jwt_file is the default token, but automountServiceAccountToken is false")
			}
		default:
			t.Errorf("jwt_file %s is not a mounted service-account token", jwt)
		}
	}
}

func TestShutdownGrace(t *testing.T) {
	m := load(t)
	_, cfg := m.config(t)
	grace := 30 * time.Second
	if cfg.ShutdownGrace != "" {
		var err error
		if grace, err = time.ParseDuration(cfg.ShutdownGrace); err != nil {
			t.Fatal(err)
		}
	}
	tg := m.pod(t).TerminationGracePeriodSeconds
	if tg == nil {
		t.Fatalf("terminationGracePeriodSeconds unset (30s), must exceed shutdown_grace %v", grace)
	}
	if time.Duration(*tg)*time.Second <= grace {
		t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown_grace %v", *tg, grace)
	}
}

// TestVaultFiles: the policy grants what the config uses, and the setup
// script binds the role the config names to the pod's service account.
func TestVaultFiles(t *testing.T) {
	m := load(t)
	_, cfg := m.config(t)
	policy := string(m.raw["vault-policy.hcl"])
	setup := string(m.raw["vault-setup.sh"])
	if policy == "" || setup == "" {
		t.Fatal("vault-policy.hcl and vault-setup.sh are needed")
	}
	mount := cfg.Vault.Mount
	if mount == "" {
		mount = "secret"
	}
	grants := func(p string, caps ...string) {
		t.Helper()
		re := regexp.MustCompile(`(?s)path\s+"` + regexp.QuoteMeta(p) + `"\s*\{[^}]*capabilities\s*=\s*\[([^\]]*)\]`)
		mm := re.FindStringSubmatch(policy)
		if mm == nil {
			t.Errorf("policy has no path %q", p)
			return
		}
		for _, c := range caps {
			if !strings.Contains(mm[1], `"`+c+`"`) {
				t.Errorf("policy path %q lacks %s", p, c)
			}
		}
	}
	if cfg.Credentials.Source == "vault" {
		grants(mount+"/data/"+cfg.Credentials.Path, "read")
		grants(mount+"/metadata/"+cfg.Credentials.Path, "read")
	}
	if cfg.TokenStore.Type == "vault" {
		grants(mount+"/data/"+cfg.TokenStore.Path+"*", "create", "update", "read")
	}
	for _, want := range []string{
		"vault auth enable kubernetes",
		"auth/kubernetes/role/" + cfg.Vault.Auth.Role,
		"bound_service_account_names=" + serviceAcct,
		"audience=" + vaultAudient,
		"vault policy write",
		"vault kv put " + mount + "/" + cfg.Credentials.Path + " client_id=",
		"client_secret=",
	} {
		if !strings.Contains(setup, want) {
			t.Errorf("vault-setup.sh lacks %q", want)
		}
	}
}

// TestConfigMapPassesCheck runs the sidecar's own validator on the
// ConfigMap's config.yaml: "panopto-sidecar check". A config with an unknown
// key must fail the same way, so the check is known to bite.
func TestConfigMapPassesCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	m := load(t)
	text, _ := m.config(t)
	dir := t.TempDir()
	bin := sidecarBinary(t)
	// In the pod the projected service-account token sits at jwt_file;
	// here a stand-in file takes its place, and -offline skips Vault itself.
	const podJWT = "/var/run/secrets/vault/token"
	if !strings.Contains(text, podJWT) {
		t.Fatalf("the ConfigMap no longer reads the projected token from %s", podJWT)
	}
	jwt := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(jwt, []byte("eyJhbGciOiJSUzI1NiJ9.e30.c2ln\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, podJWT, jwt)
	check := func(cfg string) (string, error) {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "check", "-offline", "-config", p)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no VAULT_ADDR etc. from the caller
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := check(text); err != nil {
		t.Errorf("panopto-sidecar check rejects the ConfigMap's config.yaml: %v\n%s", err, out)
	}
	if out, err := check(text + "\nnot_a_key: 1\n"); err == nil {
		t.Errorf("check accepted an unknown key; the test cannot tell good from bad:\n%s", out)
	}
}

func TestDockerfile(t *testing.T) {
	st := dockerfile(t)
	if len(st) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(st))
	}
	build, final := st[0], st[len(st)-1]
	if !strings.Contains(build.from, "golang:1.26") {
		t.Errorf("builder FROM %q, want golang:1.26", build.from)
	}
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") || !strings.Contains(final.from, "nonroot") {
		t.Errorf("final FROM %q, want distroless static nonroot", final.from)
	}
	var buildCmd string
	for _, r := range build.all("RUN") {
		if strings.Contains(r, "go build") {
			buildCmd = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/panopto-sidecar", "--mount=type=cache"} {
		if !strings.Contains(buildCmd, want) {
			t.Errorf("build step %q lacks %s", buildCmd, want)
		}
	}
	user := final.last("USER")
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final USER %q, want non-root", user)
	}
	if !slices.Contains(strings.Fields(final.last("EXPOSE")), listenPort) {
		t.Errorf("EXPOSE %q, want %s", final.last("EXPOSE"), listenPort)
	}
	bin := binaryPath(t)
	var copied bool
	for _, c := range final.all("COPY") {
		if f := strings.Fields(c); len(f) > 0 && f[len(f)-1] == bin {
			copied = true
		}
	}
	if !copied {
		t.Errorf("no COPY puts the binary at %s", bin)
	}
	hc := final.last("HEALTHCHECK")
	_, hcCmd, ok := strings.Cut(hc, "CMD ")
	if !ok {
		t.Fatalf("HEALTHCHECK %q has no CMD", hc)
	}
	if got := execForm(t, "HEALTHCHECK", hcCmd); len(got) < 2 || got[0] != bin || got[1] != "healthcheck" {
		t.Errorf("HEALTHCHECK runs %v, want %s healthcheck", got, bin)
	}
	cmd := execForm(t, "CMD", final.last("CMD"))
	if len(cmd) < 3 || cmd[0] != "serve" || cmd[1] != "-config" {
		t.Errorf("CMD %v, want serve -config FILE", cmd)
	}
	if vols := final.last("VOLUME"); !strings.Contains(vols, stateDir) {
		t.Errorf("VOLUME %q does not declare %s", vols, stateDir)
	}

	// The manifests start the image the same way.
	m := load(t)
	if args := m.sidecar(t).Args; !slices.Equal(args, cmd) {
		t.Errorf("sidecar args %v differ from the image's CMD %v", args, cmd)
	}
}

// TestBinaryPathAgrees: every mention of the installed binary in the
// Dockerfile, the manifests and the README names the same path.
func TestBinaryPathAgrees(t *testing.T) {
	bin := binaryPath(t)
	re := regexp.MustCompile(`[\w./-]*/bin/panopto-sidecar\b`)
	files := []string{"../Dockerfile", "../README.md"}
	entries, err := os.ReadDir(manifestDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		files = append(files, filepath.Join(manifestDir, e.Name()))
	}
	var inManifests int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) && f == "../README.md" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range re.FindAllString(string(data), -1) {
			if got != bin {
				t.Errorf("%s names %s; the image installs %s", f, got, bin)
			}
			if strings.HasPrefix(f, manifestDir) {
				inManifests++
			}
		}
	}
	if inManifests == 0 {
		t.Errorf("the manifests never run %s", bin)
	}
}
