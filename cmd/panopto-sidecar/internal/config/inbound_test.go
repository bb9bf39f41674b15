package config

import "testing"

func TestAllowedHosts(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"panopto-sidecar", true},
		{"Panopto-Sidecar", true},
		{"panopto_sidecar", true}, // a Compose service name
		{"sidecar.internal", true},
		{"sidecar.internal:9127", true},
		{"10.1.2.3", true},
		{"10.1.2.3:9127", true},
		{"[fd00::1]", true},
		{"[fd00::1]:9127", true},
		{"", false},
		{"http://panopto-sidecar", false},
		{"panopto-sidecar/", false},
		{"panopto-sidecar/x", false},
		{"*.ontrack.example", false},
		{"*", false},
		{".ontrack.example", false},
		{"sidecar.", false},
		{"-sidecar", false},
		{"side car", false},
		{"user@sidecar", false},
		{"sidecar:", false},
		{"sidecar:0", false},
		{"sidecar:65536", false},
		{"sidecar:http", false},
		{"fd00::1", false}, // IPv6 is written in brackets, as in Host
		{"[10.1.2.3]", false},
		{"[fe80::1%eth0]", false},
		{"[sidecar]", false},
	} {
		if got := allowedHostProblem(tc.host) == ""; got != tc.ok {
			t.Errorf("%q: ok = %v, want %v", tc.host, got, tc.ok)
		}
	}
}
