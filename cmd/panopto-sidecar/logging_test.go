package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLogDurations: durations read as "982.928µs" and "30s" in JSON and text.
func TestLogDurations(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var b bytes.Buffer
		log := newLogger(&b, format, new(slog.LevelVar), false)
		log.Info("shutting down", "grace", 30*time.Second, slog.Duration("dur", 982928*time.Nanosecond),
			slog.Group("g", "wait", 1500*time.Millisecond))
		out := b.String()
		for _, want := range []string{"30s", "982.928µs", "1.5s"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q lacks %s", format, out, want)
			}
		}
		if strings.Contains(out, "30000000000") || strings.Contains(out, "982928") {
			t.Errorf("%s: nanoseconds logged: %q", format, out)
		}
		if format == "json" && (!strings.Contains(out, `"grace":"30s"`) || !strings.Contains(out, `"dur":"982.928µs"`)) {
			t.Errorf("json: %q", out)
		}
	}
}
