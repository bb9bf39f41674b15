package config

import (
	"reflect"
	"slices"
)

// Changed returns the key paths whose settings differ between cur and next
// ("routes", "oauth.refresh_before", "log.level"), in the schema's order.
// Mappings are compared key by key down to their settings; a list or a
// scalar is one setting. A secret file whose content changed is named after
// those, unless its key is among them already. Only names are returned,
// never a value, so the result may be logged whatever the keys hold.
func Changed(cur, next *Config) []string {
	if cur == nil || next == nil {
		return nil
	}
	var keys []string
	changed(reflect.ValueOf(cur).Elem(), reflect.ValueOf(next).Elem(), "", &keys)
	const shared = "inbound.shared_secret_file"
	if cur.Secrets.SharedSecret != next.Secrets.SharedSecret && !slices.Contains(keys, shared) {
		keys = append(keys, shared)
	}
	return keys
}

// changed appends to keys the paths at or under path at which a and b
// differ. A struct is a mapping when it has keys of its own (yaml tags);
// otherwise it is one setting.
func changed(a, b reflect.Value, path string, keys *[]string) {
	if a.Kind() == reflect.Struct {
		t, mapping := a.Type(), false
		for i := range t.NumField() {
			if key := yamlKey(t.Field(i)); key != "" {
				mapping = true
				changed(a.Field(i), b.Field(i), join(path, key), keys)
			}
		}
		if mapping {
			return
		}
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*keys = append(*keys, path)
	}
}
