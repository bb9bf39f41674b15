package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/doubtfire-lms/panopto-sidecar/internal/panoptofake"
)

// The suite-wide secret scan: every Panopto stand-in started by this
// package's tests registers itself, every in-process sidecar hands over its
// whole log when it stops, and after all tests ran TestMain looks for every
// secret any stand-in ever issued (and every client secret) in everything
// any sidecar wrote. A token from one test showing up in another test's log
// is caught too.
var suite struct {
	mu      sync.Mutex
	fakes   []*panoptofake.Server
	outputs map[string]string
	extra   []string
}

func registerFake(f *panoptofake.Server) {
	suite.mu.Lock()
	suite.fakes = append(suite.fakes, f)
	suite.mu.Unlock()
}

func registerOutput(name, text string) {
	suite.mu.Lock()
	if suite.outputs == nil {
		suite.outputs = map[string]string{}
	}
	suite.outputs[name] += text
	suite.mu.Unlock()
}

// registerSecret adds a secret the stand-ins do not know (a Vault token, a
// rotated client secret set by a test).
func registerSecret(s string) {
	suite.mu.Lock()
	suite.extra = append(suite.extra, s)
	suite.mu.Unlock()
}

// wholeProgramParallel is how many tests run side by side unless -parallel
// says otherwise: whole-program tests mostly wait (on tokens expiring, on
// peers, on paced bodies), so more of them than there are CPUs fit.
const wholeProgramParallel = 4

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", fmt.Sprint(max(wholeProgramParallel, runtime.GOMAXPROCS(0))))
	}
	code := m.Run()
	if code == 0 {
		if leaks := scanSuite(); len(leaks) > 0 {
			fmt.Fprintln(os.Stderr, "suite-wide secret scan FAILED:")
			for _, l := range leaks {
				fmt.Fprintln(os.Stderr, "  "+l)
			}
			code = 1
		}
	}
	os.Exit(code)
}

func scanSuite() []string {
	suite.mu.Lock()
	defer suite.mu.Unlock()
	secrets := map[string]bool{testClientSecret: true}
	for _, s := range suite.extra {
		secrets[s] = true
	}
	for _, f := range suite.fakes {
		for _, s := range f.Secrets() {
			secrets[s] = true
		}
	}
	var leaks []string
	bytes := 0
	for name, text := range suite.outputs {
		bytes += len(text)
		for s := range secrets {
			if len(s) >= 8 && strings.Contains(text, s) {
				leaks = append(leaks, fmt.Sprintf("%s holds a secret (%d chars)", name, len(s)))
			}
		}
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "suite-wide secret scan: %d secrets, %d outputs, %d bytes: clean=%v\n", len(secrets), len(suite.outputs), bytes, len(leaks) == 0)
	}
	return leaks
}
