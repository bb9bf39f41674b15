package proxy

import "log/slog"

// levelFor is the level of a request's log line: failures stand out.
func levelFor(code int) slog.Level {
	if code >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
