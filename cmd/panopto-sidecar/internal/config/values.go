package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as config.yaml would write it: "5m", "1h30m", "250ms".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// UnmarshalYAML reads a Go duration such as "30s", "5m" or "1h30m". A number
// without a unit is refused (is 30 seconds or minutes?), except 0.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration such as 30s or 5m, got a %s", kindName(n))
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		return fmt.Errorf("want a duration such as 30s or 5m, got %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as its String form, which UnmarshalYAML reads back.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Int64 returns b as a number of bytes.
func (b ByteSize) Int64() int64 { return int64(b) }

// byteUnits maps a lower-cased unit suffix to its multiplier.
var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// String formats b in the largest binary unit that divides it exactly,
// "1MiB", "512KiB", or as a plain number of bytes.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a whole number of bytes, optionally with a unit:
// 1048576, "1MiB", "512KiB", "1MB" (decimal units are powers of 1000, binary
// ones of 1024; case does not matter, a space before the unit is allowed).
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	const want = "want a whole number of bytes, optionally with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB) such as 1MiB"
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s, got a %s", want, kindName(n))
	}
	v, ok := parseByteSize(n.Value)
	if !ok {
		return fmt.Errorf("%s, got %q", want, n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// MarshalYAML writes b as a number when it has no exact binary unit, else as
// "1MiB"; UnmarshalYAML reads both back.
func (b ByteSize) MarshalYAML() (any, error) {
	s := b.String()
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	return s, nil
}

func parseByteSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	mult, ok := byteUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || v > math.MaxInt64/mult || v < math.MinInt64/mult {
		return 0, false
	}
	return v * mult, true
}

// UnmarshalYAML accepts a bare method name (`auth: kubernetes`) or a mapping
// with the method's settings (`auth: {method: approle, role_id_file: …}`).
// Unknown keys in the mapping are an error. An empty method means token.
func (a *VaultAuth) UnmarshalYAML(n *yaml.Node) error {
	d := newDecoder()
	a.decodeNode(d, n, "")
	return errors.Join(d.errs()...)
}

// decodeNode is UnmarshalYAML with the key path of the node, so that problems
// inside the mapping form are reported as vault.auth.role_id_file.
func (a *VaultAuth) decodeNode(d *decoder, n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		*a = VaultAuth{Method: VaultAuthMethod(n.Value)}
	case yaml.MappingNode:
		*a = VaultAuth{}
		d.mapping(n, structValue(a), path)
	default:
		d.problemf(path, n, "want a method name (%s) or a mapping with method: and its settings, got a %s",
			modeList(vaultAuthMethods), kindName(n))
	}
}
