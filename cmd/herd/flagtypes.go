package main

// Flag value types shared by the commands, and the checks of address and
// port flags that run before anything starts.

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// parseSecondsDuration reads a duration ("5m", "90s") or, the old syntax of
// some flags, a bare whole number of seconds (bare is then true).
func parseSecondsDuration(s string) (d time.Duration, bare bool, err error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > math.MaxInt32 {
			return 0, true, fmt.Errorf("%d seconds: want 0 or more, as a duration like 5m", n)
		}
		return time.Duration(n) * time.Second, true, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil {
		return 0, false, fmt.Errorf("%q: want a duration like 5m or 90s", s)
	}
	if d < 0 || d > math.MaxInt32*time.Second {
		return 0, false, fmt.Errorf("%q: want a duration of 0 or more", s)
	}
	return d, false, nil
}

// wholeSeconds is d in whole seconds, rounded up.
func wholeSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// durationFlag is a duration flag that still takes a bare number as
// seconds (its old syntax); it remembers that, so that
// deprecationWarnings can tell the user to write a duration.
type durationFlag struct {
	d    *time.Duration
	name string
	bare bool
}

// newDurationFlag binds d to a duration flag that takes bare seconds too.
func newDurationFlag(f *pflag.FlagSet, d *time.Duration, name string, def time.Duration, usage string) {
	*d = def
	f.Var(&durationFlag{d: d, name: name}, name, usage)
}

// Set parses a duration or a bare number of seconds.
func (v *durationFlag) Set(s string) error {
	d, bare, err := parseSecondsDuration(s)
	if err != nil {
		return err
	}
	*v.d, v.bare = d, bare
	return nil
}

// String prints the duration as Go does (5m0s).
func (v *durationFlag) String() string { return v.d.String() }

// Type names the flag's type in the help.
func (v *durationFlag) Type() string { return "duration" }

// Deprecation says what to write instead of a deprecated value, or "".
func (v *durationFlag) Deprecation() string {
	if !v.bare {
		return ""
	}
	return fmt.Sprintf("--%s %d: a bare number of seconds is deprecated; write a duration, like %s", v.name, wholeSeconds(*v.d), shortDuration(*v.d))
}

// shortDuration prints d without zero units: 5m, 1h30m, 90s → 1m30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// deprecatedValue is a flag value that can say its value is deprecated.
type deprecatedValue interface{ Deprecation() string }

// deprecatedAnnotation marks a flag deprecateFlag hid; its value is what
// to use instead.
const deprecatedAnnotation = "herd-deprecated"

// deprecateFlag hides flag name of fs and has deprecationWarnings say msg
// when it is used. (cobra's MarkDeprecated prints on stdout, which would
// break --json output.)
func deprecateFlag(fs *pflag.FlagSet, name, msg string) {
	_ = fs.MarkHidden(name)
	_ = fs.SetAnnotation(name, deprecatedAnnotation, []string{msg})
}

// deprecationWarnings returns a warning for each deprecated flag given in
// fs and each flag whose value uses a deprecated syntax.
func deprecationWarnings(fs *pflag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if msg := f.Annotations[deprecatedAnnotation]; f.Changed && len(msg) > 0 {
			out = append(out, fmt.Sprintf("--%s is deprecated: %s", f.Name, msg[0]))
		}
		if d, ok := f.Value.(deprecatedValue); ok {
			if w := d.Deprecation(); w != "" {
				out = append(out, w)
			}
		}
	})
	return out
}

// checkListen checks an ADDR:PORT or :PORT flag before anything listens:
// a port out of range or a malformed address is a usage error.
func checkListen(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--%s %q: want ADDR:PORT or :PORT", flag, addr)
	}
	if err := checkPortString(port); err != nil {
		return usagef("--%s %q: %v", flag, addr, err)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return usagef("--%s %q: %q is neither an IP address nor a host name", flag, addr, host)
	}
	return nil
}

// checkPortString checks a port number (0 to 65535) or a service name.
func checkPortString(port string) error {
	if port == "" {
		return fmt.Errorf("no port")
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("port %d: want 0 to 65535", n)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("port %q: not a number from 0 to 65535 nor a known service", port)
	}
	return nil
}

// checkPort checks an integer port flag: min (0 or 1) to 65535.
func checkPort(flag string, n, min int) error {
	if n < min || n > 65535 {
		return usagef("--%s %d: want a port from %d to 65535", flag, n, min)
	}
	return nil
}

// validHostname reports whether s looks like a DNS host name.
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return false
			}
		}
	}
	return true
}

// checkServerURL checks a --server URL (http://HOST:PORT, or HOST:PORT)
// before anything is asked of it.
func checkServerURL(flag, s string) error {
	raw := s
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return usagef("--%s %q: want http://HOST:PORT", flag, s)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if err := checkPortString(p); err != nil {
			return usagef("--%s %q: %v", flag, s, err)
		}
	}
	return nil
}
