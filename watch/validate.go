package watch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MaxKeyLen and MaxMetadata bound what a client sends.
const (
	MaxKeyLen   = 255
	MaxMetadata = 4 << 10
)

// ValidKey checks an Idempotency-Key: 1 to 255 printable ASCII characters
// (space to '~').
func ValidKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("the Idempotency-Key must be 1 to %d characters", MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return errors.New("the Idempotency-Key must be printable ASCII")
		}
	}
	return nil
}

// Metadata checks an upload's metadata (the metadata query parameter or
// X-Upload-Metadata header): one JSON object of at most 4 KiB. It returns
// the object without insignificant white space; "" is no metadata (nil).
func Metadata(raw string) (json.RawMessage, error) {
	if raw == "" {
		return nil, nil
	}
	if len(raw) > MaxMetadata {
		return nil, fmt.Errorf("metadata is over %d bytes", MaxMetadata)
	}
	trimmed := bytes.TrimLeft([]byte(raw), " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("metadata must be a JSON object")
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(raw)); err != nil {
		return nil, errors.New("metadata must be a JSON object")
	}
	return b.Bytes(), nil
}
