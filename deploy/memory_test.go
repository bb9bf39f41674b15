package deploy

import (
	"regexp"
	"strconv"
	"testing"

	"go.yaml.in/yaml/v3"
)

// size parses a byte size as config.yaml ("256MiB"), GOMEMLIMIT ("320MiB")
// or a Kubernetes quantity ("384Mi") writes it; binary units only.
func size(t *testing.T, what, v string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)(Ki|Mi|Gi|KiB|MiB|GiB|B)?$`).FindStringSubmatch(v)
	if m == nil {
		t.Fatalf("%s: cannot read %q as a size", what, v)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	switch m[2] {
	case "Ki", "KiB":
		n <<= 10
	case "Mi", "MiB":
		n <<= 20
	case "Gi", "GiB":
		n <<= 30
	}
	return n
}

// TestMemorySizedFromUploadBudget: the sidecar container's memory limit
// and GOMEMLIMIT follow the ConfigMap's uploads.memory_limit, the budget
// every upload's part buffers come from: GOMEMLIMIT at least the budget
// plus 32 MiB for the rest of the process, the limit at least the budget
// plus 128 Mi and above GOMEMLIMIT.
func TestMemorySizedFromUploadBudget(t *testing.T) {
	m := load(t)
	text, _ := m.config(t)
	var cfg struct {
		Uploads struct {
			MemoryLimit string `yaml:"memory_limit"`
		} `yaml:"uploads"`
	}
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatal(err)
	}
	budget := int64(256 << 20) // the default
	if cfg.Uploads.MemoryLimit != "" {
		budget = size(t, "uploads.memory_limit", cfg.Uploads.MemoryLimit)
	}
	c := m.sidecar(t)
	limit := size(t, "limits.memory", c.Resources.Limits["memory"])
	var gomemlimit int64
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			gomemlimit = size(t, "GOMEMLIMIT", e.Value)
		}
	}
	if gomemlimit == 0 {
		t.Fatal("GOMEMLIMIT is not set to a size")
	}
	if gomemlimit < budget+32<<20 || gomemlimit >= limit {
		t.Errorf("GOMEMLIMIT %d MiB: want at least uploads.memory_limit + 32 MiB (%d MiB) and below the memory limit (%d MiB)",
			gomemlimit>>20, (budget+32<<20)>>20, limit>>20)
	}
	if limit < budget+128<<20 {
		t.Errorf("memory limit %d MiB: want at least uploads.memory_limit + 128 Mi = %d MiB", limit>>20, (budget+128<<20)>>20)
	}
}
