package membership

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter turns memberlist's standard-library log lines
// ("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes
// failed") into slog records at the matching level.
type slogWriter struct{ log *slog.Logger }

func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{log: l}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	for line := range strings.SplitSeq(strings.TrimRight(string(p), "\n"), "\n") {
		level, msg := parseLogLine(line)
		if w.log.Enabled(context.Background(), level) {
			w.log.Log(context.Background(), level, msg, "component", "memberlist")
		}
	}
	return len(p), nil
}

// parseLogLine splits "[LEVEL] memberlist: text" into a level and the text.
// Lines without a level tag are logged at info.
func parseLogLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
