// Package logging builds the service's slog logger: JSON in production, text on a
// terminal. Fixed keys across the code base: topic, partition, offset, page_id, event_id.
// Tokens, secrets and message text are never logged.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Config is the logger's configuration.
type Config struct {
	Level  string // LOG_LEVEL: debug, info, warn, error
	Format string // LOG_FORMAT: auto (text on a terminal, else json), json, text
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config { return Config{Level: "info", Format: "auto"} }

// New builds a logger writing to w.
func New(c Config, w *os.File) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", c.Level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(c.Format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "auto", "":
		if IsTerminal(w) {
			return slog.New(slog.NewTextHandler(w, opts)), nil
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT must be auto, json or text, got %q", c.Format)
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Discard is a logger that writes nothing, for tests.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
