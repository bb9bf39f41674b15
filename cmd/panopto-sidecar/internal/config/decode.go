package config

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a config: the key path it concerns
// ("oauth.refresh_before", "routes[2].prefix"; empty for the whole document),
// the line it is on (0 when the key is absent from the file) and what is wrong.
type Problem struct {
	Path string
	Line int
	Msg  string
}

func (p *Problem) Error() string {
	s := p.Msg
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Line > 0 {
		s += fmt.Sprintf(" (line %d)", p.Line)
	}
	return s
}

// decoder walks a yaml.Node tree against the schema's yaml tags and collects
// every unknown key, duplicate key and mistyped value, each with its key path
// and line; it does not stop at the first. (yaml.v3's own errors name only a
// line and a Go type, and it stops at the first error a custom UnmarshalYAML
// returns.) It remembers the line of every key it saw, for validation problems.
type decoder struct {
	problems []*Problem
	lines    map[string]int
}

func newDecoder() *decoder { return &decoder{lines: map[string]int{}} }

func (d *decoder) problemf(path string, n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.problems = append(d.problems, &Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) errs() []error {
	errs := make([]error, len(d.problems))
	for i, p := range d.problems {
		errs[i] = p
	}
	return errs
}

// nodeDecoder is implemented by schema types with their own YAML forms that
// still want their problems reported under their key path.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode stores n into v, which must be addressable. A null value leaves v as
// it was, so a key written without a value keeps its default.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return
	}
	if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
		nd.decodeNode(d, n, path)
		return
	}
	if v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.problemf(path, n, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.problemf(path, n, "want a string, got a %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.problemf(path, n, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.problemf(path, n, "want a whole number, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || n.Decode(&f) != nil {
			d.problemf(path, n, "want a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		// A schema field of a type this decoder does not know: a bug, reported
		// rather than panicking on an operator's file.
		d.problemf(path, n, "internal error: cannot decode into %s", v.Type())
	}
}

// structValue returns the addressable struct p points to.
func structValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// mapping decodes a YAML mapping into the struct v by yaml tags.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problemf(path, n, "want a mapping of keys, got %s", describe(n))
		return
	}
	fields := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		if key := yamlKey(t.Field(i)); key != "" {
			fields[key] = i
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.problemf(path, k, "keys must be plain names, got a %s", kindName(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.problemf(join(path, k.Value), k, "merge keys are not supported; write the keys out")
			continue
		}
		p := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.problemf(p, k, "duplicate key, first at line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			d.problemf(p, k, "unknown key")
			continue
		}
		d.lines[p] = k.Line
		d.decode(val, v.Field(f), p)
	}
}

// sequence decodes a YAML sequence into the slice v, replacing what it held.
// An empty sequence becomes a nil slice.
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.problemf(path, n, "want a list, got %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		v.SetZero()
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = e.Line
		d.decode(e, s.Index(i), p)
	}
	v.Set(s)
}

// yamlKey is the key f is written under in config.yaml, "" for a field
// that is not part of the file.
func yamlKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if key == "-" {
		return ""
	}
	return key
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	case yaml.DocumentNode:
		return "document"
	}
	return "nothing"
}

// describe names a node for a message: its value if it is a scalar.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q", n.Value)
	}
	return "a " + kindName(n)
}
