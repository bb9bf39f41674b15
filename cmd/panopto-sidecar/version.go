package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3" (see the
// Dockerfile). Left at "dev", the module's build information is used.
var version = "dev"

// buildVersion says which build of the program is running.
type buildVersion struct {
	Version   string // the -X main.version value, else the module version, else "dev"
	Revision  string // VCS commit, "" when not stamped
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string
}

// currentVersion describes the running binary.
func currentVersion() buildVersion {
	bi, _ := debug.ReadBuildInfo()
	return resolveVersion(version, bi)
}

// resolveVersion prefers the version set by the linker and falls back to what
// the Go tool records: the module version (go install …@v1.2.3) and the VCS
// revision (a build from a clone). bi may be nil.
func resolveVersion(ldflags string, bi *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: ldflags, GoVersion: runtime.Version()}
	if bi == nil {
		if v.Version == "" {
			v.Version = "dev"
		}
		return v
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	if v.Version == "" || v.Version == "dev" {
		v.Version = "dev"
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one-line form: "v1.2.3 (revision 1a2b3c4, modified, go1.26.8)".
func (v buildVersion) String() string {
	var parts []string
	if v.Revision != "" {
		parts = append(parts, "revision "+v.Revision)
	}
	if v.Modified {
		parts = append(parts, "modified")
	}
	parts = append(parts, v.GoVersion)
	return fmt.Sprintf("%s (%s)", v.Version, strings.Join(parts, ", "))
}

// revisionLabel is the revision with "-modified" when the tree was dirty.
func (v buildVersion) revisionLabel() string {
	if v.Modified && v.Revision != "" {
		return v.Revision + "-modified"
	}
	return v.Revision
}

// buildInfoGauge is panopto_sidecar_build_info{version,revision,goversion} 1.
func buildInfoGauge(v buildVersion) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "panopto_sidecar_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(v.Version, v.revisionLabel(), v.GoVersion).Set(1)
	return g
}
