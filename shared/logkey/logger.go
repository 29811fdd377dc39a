package logkey

import (
	"fmt"
	"io"
	"log/slog"
)

// New builds a root logger writing to w in format "text" or "json" at
// level and above. It is meant for a binary's main (daemon.Main) and
// tests; libraries receive their logger.
func New(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("logkey: unknown log format %q (want text or json)", format)
}
