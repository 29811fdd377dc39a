package logkey

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		format string
		level  slog.Level
		check  func(t *testing.T, out string)
	}{
		{"text", slog.LevelInfo, func(t *testing.T, out string) {
			if !strings.Contains(out, "msg=hello daemon=stored") || strings.Contains(out, "hidden") {
				t.Errorf("text output %q", out)
			}
		}},
		{"json", slog.LevelDebug, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 {
				t.Fatalf("json output %q; want 2 lines", out)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m[Daemon] != "stored" {
				t.Errorf("json line %q: %v", lines[1], err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.format, tt.level)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden")
			log.Info("hello", Daemon, "stored")
			tt.check(t, buf.String())
		})
	}
	if _, err := New(&bytes.Buffer{}, "xml", slog.LevelInfo); err == nil {
		t.Error("New(xml) succeeded")
	}
}
