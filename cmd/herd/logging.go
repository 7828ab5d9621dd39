package main

// herd's log lines on stderr, through log/slog: --log-format text (for a
// terminal: "2026-12-04 08:20:01 INFO deploy: … session=rack1") or json
// (one object per line with time, level, msg and the attributes, for a
// collector), --log-level debug|info|warn|error. Progress bars and the
// --json report lines on stdout are no logs and do not come through here.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/internal/syncio"
)

// logKey is the context key of the command's logger.
type logKey struct{}

// logFlags are the root's --log-format and --log-level.
type logFlags struct {
	format, level string
}

// newLogger builds the logger the flags ask for, writing to w.
func (lf logFlags) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch strings.ToLower(lf.level) {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, usagef("--log-level %q: want debug, info, warn or error", lf.level)
	}
	switch lf.format {
	case "text", "":
		return slog.New(&textHandler{w: w, level: level, mu: &sync.Mutex{}}), nil
	case "json":
		return slog.New(slog.NewJSONHandler(syncio.NewWriter(w), &slog.HandlerOptions{Level: level})), nil
	}
	return nil, usagef("--log-format %q: want text or json", lf.format)
}

// withLogFlags returns ctx carrying the log flags, checked.
func withLogFlags(ctx context.Context, lf logFlags) context.Context {
	return context.WithValue(ctx, logKey{}, lf)
}

// loggerFrom returns a logger writing to w as the root's log flags in ctx
// say (text at info when there are none: a command run outside the root,
// in a test). Each command writes its log lines to its stderr through it.
func loggerFrom(ctx context.Context, w io.Writer) *slog.Logger {
	var lf logFlags
	if ctx != nil {
		lf, _ = ctx.Value(logKey{}).(logFlags)
	}
	l, err := lf.newLogger(w)
	if err != nil { // checked before the command ran
		l, _ = logFlags{}.newLogger(w)
	}
	return l
}

// printfAt adapts l to the printf-style log functions the packages take
// (ring, pxe, deploy): each call is one record at level, raised to warn
// when the message says it is a warning. A message that names one
// machine by its MAC gets it as the attribute mac, so a collector can
// follow one machine.
func printfAt(l *slog.Logger, level slog.Level) func(string, ...any) {
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		lv := level
		if lv < slog.LevelWarn && (strings.Contains(msg, "warning:") || strings.Contains(msg, "WARNING")) {
			lv = slog.LevelWarn
		}
		l.Log(context.Background(), lv, msg, macAttr(msg)...)
	}
}

var macRE = regexp.MustCompile(`\b[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}\b`)

// macAttr returns the attribute mac when msg names exactly one MAC.
func macAttr(msg string) []any {
	ms := macRE.FindAllString(msg, -1)
	if len(ms) == 0 {
		return nil
	}
	for _, m := range ms[1:] {
		if !strings.EqualFold(m, ms[0]) {
			return nil
		}
	}
	return []any{"mac", strings.ToLower(ms[0])}
}

// textHandler writes one readable line per record: date and time, level,
// message, then the attributes as key=value.
type textHandler struct {
	w     io.Writer
	level slog.Level
	mu    *sync.Mutex
	attrs []slog.Attr
	group string
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b.WriteString(t.Format("2006-01-02 15:04:05"))
	b.WriteByte(' ')
	b.WriteString(r.Level.String())
	b.WriteByte(' ')
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		writeAttr(&b, "", a)
	}
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	key := a.Key
	if group != "" {
		key = group + "." + key
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			writeAttr(b, key, g)
		}
		return
	}
	v := a.Value.String()
	if v == "" || strings.ContainsAny(v, " \t\n\"=") {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s=%s", key, v)
}

func (h *textHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range attrs {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		h2.attrs = append(h2.attrs, a)
	}
	return &h2
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	h2 := *h
	if h.group != "" {
		name = h.group + "." + name
	}
	h2.group = name
	return &h2
}

// jsonErrorWriter turns the one error line a command ends with
// ("herd: why") into a JSON log record at level ERROR, for --log-format
// json.
type jsonErrorWriter struct{ w io.Writer }

func (j jsonErrorWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(strings.TrimPrefix(string(p), "herd: "), "\n")
	l, _ := logFlags{format: "json"}.newLogger(j.w)
	l.Error(msg)
	return len(p), nil
}
