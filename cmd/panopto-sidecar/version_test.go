package main

import (
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
	"github.com/doubtfire-lms/panopto-sidecar/internal/testsupport"
)

func TestResolveVersion(t *testing.T) {
	info := func(mod string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/doubtfire-lms/panopto-sidecar", Version: mod}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		name    string
		ldflags string
		bi      *debug.BuildInfo
		want    buildVersion
		str     string
	}{
		{"set by the linker", "v1.4.0", info("(devel)", "vcs.revision", "abc123", "vcs.modified", "false"),
			buildVersion{"v1.4.0", "abc123", false, "go1.26.8"}, "v1.4.0 (revision abc123, go1.26.8)"},
		{"go install @version", "dev", info("v1.3.2"),
			buildVersion{"v1.3.2", "", false, "go1.26.8"}, "v1.3.2 (go1.26.8)"},
		{"built from a dirty clone", "dev", info("(devel)", "vcs.revision", "0123456789ab", "vcs.modified", "true"),
			buildVersion{"dev", "0123456789ab", true, "go1.26.8"}, "dev (revision 0123456789ab, modified, go1.26.8)"},
		{"empty ldflags", "", info(""), buildVersion{"dev", "", false, "go1.26.8"}, "dev (go1.26.8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolveVersion(tc.ldflags, tc.bi)
			if got != tc.want || got.String() != tc.str {
				t.Errorf("got %+v %q, want %+v %q", got, got.String(), tc.want, tc.str)
			}
		})
	}
	if v := resolveVersion("dev", nil); v.Version != "dev" || v.GoVersion == "" {
		t.Errorf("no build info: %+v", v)
	}
}

// TestVersionEverywhere: the running build is named in the start-up log,
// in /-/status and by the panopto_sidecar_build_info metric; durations in
// JSON logs are readable.
func TestVersionEverywhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := holdAddr(t)
	pan := startPanopto(t, panoptofake.Options{RedirectURIs: []string{"http://" + addr + "/redirect"}})
	sc := startSidecar(t, dir, addr, baseConfig(pan.URL, dir), nil)
	v := currentVersion()

	metrics := fetch(t, sc.URL+"/metrics")
	want := `panopto_sidecar_build_info{goversion="` + v.GoVersion + `",revision="` + v.revisionLabel() + `",version="` + v.Version + `"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
	var st map[string]any
	getJSON(t, sc.URL+"/-/status", &st)
	if st["version"] != v.Version {
		t.Errorf("status version = %v, want %q", st["version"], v.Version)
	}

	fetch(t, sc.URL+"/Panopto/api/v1/folders") // not connected: 503, logged
	var listening, request map[string]any
	testsupport.WaitFor(t, 5*time.Second, "the request log line", func() bool {
		for _, line := range strings.Split(sc.Logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				continue
			}
			switch m["msg"] {
			case "listening":
				listening = m
			case "request":
				request = m
			}
		}
		return listening != nil && request != nil
	})
	if listening["version"] != v.Version {
		t.Errorf("listening line: version = %v, want %q", listening["version"], v.Version)
	}
	if d, ok := request["dur"].(string); !ok {
		t.Errorf("request dur = %#v, want a string", request["dur"])
	} else if _, err := time.ParseDuration(d); err != nil {
		t.Errorf("request dur %q: %v", d, err)
	}
}
