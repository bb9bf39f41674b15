package config

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// publicURLProblem says what is wrong with public_url, or "". Besides an
// origin it may carry a path (https://ontrack.example/panopto): the prefix
// under which a reverse proxy in front of the sidecar serves its login pages.
func publicURLProblem(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "must be a valid URL"
	case u.User != nil:
		return "must not hold a user name or password"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "must have no query or fragment"
	case u.Path == "" && u.Opaque == "" && u.RawPath == "":
		return ""
	case u.Opaque != "" || u.RawPath != "" || strings.ContainsAny(u.Path, "%\\;") || strings.ContainsFunc(u.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Sprintf("path must be plain, without %%, \\, ;, spaces or control characters; got %q", u.Path)
	case path.Clean(u.Path) != u.Path:
		return fmt.Sprintf("path must be clean, without //, . or .. segments or a trailing /; got %q", u.Path)
	}
	return ""
}

// publicPath is public_url's path: "" or a prefix such as /panopto.
func (c *Config) publicPath() string {
	u, err := url.Parse(c.PublicURL)
	if err != nil {
		return ""
	}
	return u.Path
}
