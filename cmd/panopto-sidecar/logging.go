package main

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// newLogger logs to w: tint (coloured) on a terminal when format is auto or
// text, JSON otherwise. The level can change at runtime through lv.
func newLogger(w io.Writer, format string, lv *slog.LevelVar, tty bool) *slog.Logger {
	switch {
	case format == "text" || (format == "auto" && tty):
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: lv, TimeFormat: time.TimeOnly, NoColor: !tty, ReplaceAttr: readableDurations}))
	default:
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: readableDurations}))
	}
}

// readableDurations writes durations as "982.928µs" or "30s" in every
// format; slog's JSON handler would write nanoseconds (982928).
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// isTerminal reports whether w is a terminal (for colours).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
