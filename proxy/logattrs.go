package proxy

import (
	"log/slog"
	"net/url"
	"time"
)

func slogString(k, v string) slog.Attr            { return slog.String(k, v) }
func slogInt(k string, v int) slog.Attr           { return slog.Int(k, v) }
func slogInt64(k string, v int64) slog.Attr       { return slog.Int64(k, v) }
func slogDur(k string, v time.Duration) slog.Attr { return slog.Duration(k, v) }
func urlQueryEscape(s string) string              { return url.QueryEscape(s) }

func levelFor(code int) slog.Level {
	if code >= 500 {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
