package vault_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
	"github.com/doubtfire-lms/panopto-sidecar/token"
	"github.com/doubtfire-lms/panopto-sidecar/vault"
	"github.com/doubtfire-lms/panopto-sidecar/vault/vaulttest"
	"github.com/hashicorp/vault/api"
)

// tokenReviewer stands in for the Kubernetes API's TokenReview endpoint,
// which Vault's kubernetes auth method calls for every login. It accepts the
// JWTs in valid and records every JWT it was asked about.
type tokenReviewer struct {
	mu     sync.Mutex
	valid  map[string]bool
	asked  []string
	user   string
	userID string
}

func (r *tokenReviewer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
		http.NotFound(w, req)
		return
	}
	var review struct {
		Spec struct {
			Token string `json:"token"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(req.Body).Decode(&review); err != nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.asked = append(r.asked, review.Spec.Token)
	ok := r.valid[review.Spec.Token]
	r.mu.Unlock()
	status := map[string]any{"authenticated": false, "error": "token expired or unknown"}
	if ok {
		status = map[string]any{"authenticated": true, "user": map[string]any{"username": r.user, "uid": r.userID}}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status,
	})
}

func (r *tokenReviewer) allow(jwt string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.valid[jwt] = ok
}

func (r *tokenReviewer) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

// serviceAccountJWT signs a legacy service-account token (ES256). Vault
// verifies it with the TokenReview call, not with a key.
func serviceAccountJWT(t *testing.T, key *ecdsa.PrivateKey, ns, name, uid string, serial int) string {
	t.Helper()
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss":                                    "kubernetes/serviceaccount",
		"sub":                                    "system:serviceaccount:" + ns + ":" + name,
		"kubernetes.io/serviceaccount/namespace": ns,
		"kubernetes.io/serviceaccount/service-account.name": name,
		"kubernetes.io/serviceaccount/service-account.uid":  uid,
		"kubernetes.io/serviceaccount/secret.name":          name + "-token",
		"jti": fmt.Sprint(serial),
	})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig)
}

func TestKubernetesLoginRereadsJWT(t *testing.T) {
	t.Parallel()
	srv := vaulttest.StartDev(t)
	root := srv.Client(t)
	setupPolicy(t, root)

	reviewer := &tokenReviewer{valid: map[string]bool{}, user: "system:serviceaccount:ontrack:sidecar", userID: "0d8f6c1e-uid"}
	k8s := httptest.NewTLSServer(reviewer)
	t.Cleanup(k8s.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k8s.Certificate().Raw})

	if err := root.Sys().EnableAuthWithOptions("kubernetes", &api.EnableAuthOptions{Type: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/kubernetes/config", map[string]any{
		"kubernetes_host":        k8s.URL,
		"kubernetes_ca_cert":     string(caPEM),
		"disable_local_ca_jwt":   true,
		"disable_iss_validation": true,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("auth/kubernetes/role/sidecar", map[string]any{
		"bound_service_account_names":      "sidecar",
		"bound_service_account_namespaces": "ontrack",
		"token_policies":                   "sidecar",
		"token_ttl":                        "2s",
		"token_max_ttl":                    "3s",
	}); err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwt1 := serviceAccountJWT(t, key, "ontrack", "sidecar", reviewer.userID, 1)
	jwt2 := serviceAccountJWT(t, key, "ontrack", "sidecar", reviewer.userID, 2)
	reviewer.allow(jwt1, true)
	jwtFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, jwtFile, jwt1)

	logger, logs := newLogger(t)
	c := newClient(t, vault.Config{Address: srv.Addr(), Auth: vault.Auth{Method: "kubernetes", Role: "sidecar", JWTFile: jwtFile}}, nil, logger)
	testsupport.WaitFor(t, 10*time.Second, "kubernetes login", func() bool { return c.Status().Logins >= 1 })
	s := vault.NewStore(c, "panopto/token")
	if _, err := s.CompareAndSwap(ctxT(t), "", 0, token.Record{Dropped: "k8s"}); err != nil {
		t.Fatal(err)
	}
	if got := reviewer.seen(); len(got) == 0 || got[0] != jwt1 {
		t.Fatalf("first review did not present the first JWT")
	}

	// Kubernetes rotates the projected token: the old one stops being valid
	// and the next login (after the 3 s max TTL) must read the new file.
	writeFile(t, jwtFile, jwt2)
	reviewer.allow(jwt1, false)
	reviewer.allow(jwt2, true)
	n := c.Status().Logins
	testsupport.WaitFor(t, 15*time.Second, "login with the rotated JWT", func() bool { return c.Status().Logins > n })
	seen := reviewer.seen()
	if !slices.Contains(seen, jwt2) {
		t.Fatal("the rotated JWT was never presented")
	}
	first2 := slices.Index(seen, jwt2)
	if slices.Contains(seen[first2:], jwt1) {
		t.Error("the old JWT was presented after the rotated one")
	}
	if _, _, err := s.Load(ctxT(t), ""); err != nil {
		t.Fatalf("Load after re-login: %v", err)
	}
	noLeak(t, logs.String()+c.Status().LastError, jwt1, jwt2)
}
