package config

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// validateAllowedHosts checks inbound.allowed_hosts: each a host name or
// an IP address, optionally with :port, as a Host header carries it; no
// scheme, path or wildcard.
func (c *Config) validateAllowedHosts(v *validator) {
	for i, h := range c.Inbound.AllowedHosts {
		if msg := allowedHostProblem(h); msg != "" {
			v.problemf(fmt.Sprintf("inbound.allowed_hosts[%d]", i), "%s; got %q", msg, h)
		}
	}
}

func allowedHostProblem(h string) string {
	const want = "must be a host name or IP address as the Host header names it, optionally with :port " +
		"(panopto-sidecar, sidecar.internal:9127, [fd00::1]); no scheme, path or wildcard"
	name := h
	if n, p, err := net.SplitHostPort(h); err == nil {
		if !validPort(p, 1) {
			return want
		}
		name = n
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		name = h[1 : len(h)-1]
	}
	bracketed := strings.HasPrefix(h, "[")
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Zone() != "" || ip.Is6() != bracketed {
			return want
		}
		return ""
	}
	if bracketed || !validHostName(name) {
		return want
	}
	return ""
}

// validHostName reports whether s is a DNS name: dot-separated labels of
// 1-63 letters, digits, '-' or '_' (Docker Compose service names have
// them), not starting or ending with '-'; at most 253 bytes.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
