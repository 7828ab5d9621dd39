package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/herd-cluster/herd/pxe/httpboot"
	"github.com/herd-cluster/herd/pxe/state"
)

// ErrFixup means the copy verified but the fix-ups of the cloned
// system (identity, hooks) failed: the machine is reported failed with
// the reason, not done.
var ErrFixup = errors.New("agent: fix-ups failed")

// errNoRoot: no partition of the clone holds a system's root.
var errNoRoot = errors.New("no root file system found")

// FixupJob is what the agent does to its clone after a verified copy:
// the server's orders and this machine's name and addresses.
type FixupJob struct {
	// Orders come from the sealed registration answer.
	Orders httpboot.Fixups
	// Name is the machine's name from the answer (a host name or "").
	Name string
	// MAC and IP are this machine's (HERD_MAC, HERD_IP for the hooks).
	MAC, IP string
}

// empty reports whether the job orders nothing.
func (j FixupJob) empty() bool { return !j.Orders.Identity && len(j.Orders.Hooks) == 0 }

// FixIdentity gives the system whose root file system is mounted at
// root an identity of its own: name (when not empty, it must be a host
// name) in /etc/hostname and on the 127.0.1.1 line of /etc/hosts; an
// empty /etc/machine-id (systemd makes one at the next boot), no
// /var/lib/dbus/machine-id file; no /etc/ssh/ssh_host_* keys (the
// caller regenerates them if it can). Nothing outside root is touched:
// a symbolic link leading out of it is an error. It returns what it
// did, one short phrase per change, also when it fails half way.
func FixIdentity(root, name string) ([]string, error) {
	if name != "" && !httpboot.ValidHostname(name) {
		return nil, fmt.Errorf("identity: machine name %q is not a host name (RFC 1123), refused", name)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer r.Close()
	if fi, err := r.Stat("etc"); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("identity: %s has no /etc: not the root file system of a system", root)
	}
	var did []string
	if name != "" {
		if err := rewrite(r, "etc/hostname", []byte(name+"\n"), 0o644); err != nil {
			return did, fmt.Errorf("identity: /etc/hostname: %w", err)
		}
		did = append(did, "hostname "+name)
		switch b, err := r.ReadFile("etc/hosts"); {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return did, fmt.Errorf("identity: /etc/hosts: %w", err)
		default:
			if nb, ok := hostsWithName(b, name); ok {
				if err := rewrite(r, "etc/hosts", nb, 0o644); err != nil {
					return did, fmt.Errorf("identity: /etc/hosts: %w", err)
				}
				did = append(did, "/etc/hosts 127.0.1.1 "+name)
			}
		}
	}
	switch fi, err := r.Lstat("etc/machine-id"); {
	case errors.Is(err, fs.ErrNotExist):
		did = append(did, "no /etc/machine-id")
	case err != nil:
		return did, fmt.Errorf("identity: /etc/machine-id: %w", err)
	case fi.Mode().IsRegular():
		f, err := r.OpenFile("etc/machine-id", os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			return did, fmt.Errorf("identity: empty /etc/machine-id: %w", err)
		}
		did = append(did, "machine-id emptied")
	default:
		return did, fmt.Errorf("identity: /etc/machine-id is not a regular file (%v)", fi.Mode().Type())
	}
	if fi, err := r.Lstat("var/lib/dbus/machine-id"); err == nil && fi.Mode().IsRegular() {
		if err := r.Remove("var/lib/dbus/machine-id"); err != nil {
			return did, fmt.Errorf("identity: remove /var/lib/dbus/machine-id: %w", err)
		}
		did = append(did, "dbus machine-id removed")
	}
	keys, err := hostKeys(r)
	if err != nil {
		return did, err
	}
	for _, k := range keys {
		if err := r.Remove("etc/ssh/" + k); err != nil {
			return did, fmt.Errorf("identity: remove /etc/ssh/%s: %w", k, err)
		}
	}
	if len(keys) > 0 {
		did = append(did, fmt.Sprintf("%d ssh host key files removed", len(keys)))
	}
	return did, nil
}

// hostKeys lists the ssh_host_* entries of root's /etc/ssh.
func hostKeys(r *os.Root) ([]string, error) {
	d, err := r.Open("etc/ssh")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: /etc/ssh: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("identity: /etc/ssh: %w", err)
	}
	var keys []string
	for _, n := range names {
		if strings.HasPrefix(n, "ssh_host_") {
			keys = append(keys, n)
		}
	}
	return keys, nil
}

// rewrite replaces the contents of name under r, keeping the mode of an
// existing file (perm for a new one).
func rewrite(r *os.Root, name string, b []byte, perm os.FileMode) error {
	f, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// hostsWithName returns /etc/hosts with its 127.0.1.1 lines naming
// name (and its first label, for a dotted name) instead of the
// golden's, and whether there was such a line.
func hostsWithName(b []byte, name string) ([]byte, bool) {
	entry := "127.0.1.1\t" + name
	if short, _, ok := strings.Cut(name, "."); ok {
		entry += " " + short
	}
	lines := strings.SplitAfter(string(b), "\n")
	found := false
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			nl := ""
			if strings.HasSuffix(l, "\n") {
				nl = "\n"
			}
			lines[i], found = entry+nl, true
		}
	}
	return []byte(strings.Join(lines, "")), found
}

// tailBuffer keeps the last n lines written to it, each cut to max
// bytes (a longer line keeps its start). It may be written concurrently.
type tailBuffer struct {
	mu      sync.Mutex
	n, max  int
	lines   []string
	partial []byte
}

func newTailBuffer(n, max int) *tailBuffer { return &tailBuffer{n: n, max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range p {
		if c == '\n' {
			t.push()
			continue
		}
		if len(t.partial) < t.max {
			t.partial = append(t.partial, c)
		}
	}
	return len(p), nil
}

// push ends the current line. Called with t.mu held.
func (t *tailBuffer) push() {
	l := strings.ToValidUTF8(string(t.partial), "?")
	t.partial = t.partial[:0]
	t.lines = append(t.lines, l)
	if len(t.lines) > t.n {
		t.lines = append(t.lines[:0:0], t.lines[len(t.lines)-t.n:]...)
	}
}

// Lines returns the lines kept, the unfinished one last.
func (t *tailBuffer) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(bytes.TrimSpace(t.partial)) > 0 {
		out = append(out, strings.ToValidUTF8(string(t.partial), "?"))
		if len(out) > t.n {
			out = out[1:]
		}
	}
	return out
}

// The agent's own log as sent with its reports.
const (
	// AgentLogLines is how many of its last printed lines an agent
	// sends with a report.
	AgentLogLines = state.MaxAgentLogLines
	// AgentLogLine bounds each of them.
	AgentLogLine = state.MaxLogLine
)

// FitReport returns rep with its logs cut so that its JSON holds at most
// max bytes: every log line cut to AgentLogLine bytes, then the oldest
// lines of the agent's log dropped, then the kernel log's, then the
// error and the fix-ups cut.
func FitReport(rep httpboot.ReportRequest, max int) httpboot.ReportRequest {
	cut := func(ls []string) []string {
		out := make([]string, len(ls))
		for i, l := range ls {
			if len(l) > AgentLogLine {
				l = strings.ToValidUTF8(l[:AgentLogLine], "")
			}
			out[i] = l
		}
		return out
	}
	if rep.Log != nil {
		rep.Log = cut(rep.Log)
	}
	if rep.AgentLog != nil {
		rep.AgentLog = cut(rep.AgentLog)
	}
	size := func() int {
		b, _ := json.Marshal(rep)
		return len(b)
	}
	for size() > max && len(rep.AgentLog) > 0 {
		rep.AgentLog = rep.AgentLog[(len(rep.AgentLog)+9)/10:]
	}
	for size() > max && len(rep.Log) > 0 {
		rep.Log = rep.Log[(len(rep.Log)+9)/10:]
	}
	if size() > max {
		rep.Error = strings.ToValidUTF8(truncateBytes(rep.Error, 2048), "")
		rep.Fixups = strings.ToValidUTF8(truncateBytes(rep.Fixups, 1024), "")
	}
	return rep
}

func truncateBytes(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// FilesRootPrefix is in the line herd recv --files logs on its standard
// error when the copy ends: the file systems it made, as MOUNT=FS(UUID)
// words (see cmd/herd reportFiles). What comes before it is the log's
// (date, time, level; or "herd " from older herds).
const FilesRootPrefix = "recv: file-level copy "

// ParseFilesRoot returns the UUID of the file system mounted at "/" in
// the desc, from herd recv --files's closing line; "" when the line is
// not that line or names no root.
func ParseFilesRoot(line string) string {
	i := strings.Index(line, FilesRootPrefix)
	if i < 0 {
		return ""
	}
	rest := line[i+len(FilesRootPrefix):]
	for _, w := range strings.Fields(rest) {
		fs, ok := strings.CutPrefix(strings.TrimSuffix(w, ";"), "/=")
		if !ok {
			continue
		}
		open := strings.IndexByte(fs, '(')
		if open < 0 || !strings.HasSuffix(fs, ")") {
			return ""
		}
		uuid := fs[open+1 : len(fs)-1]
		for _, c := range uuid {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
				return ""
			}
		}
		return uuid
	}
	return ""
}

// lineWatcher calls fn with every complete line written to it (lines
// longer than 4 KiB are cut).
type lineWatcher struct {
	fn  func(string)
	buf []byte
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	for _, c := range p {
		if c == '\n' {
			w.fn(string(w.buf))
			w.buf = w.buf[:0]
			continue
		}
		if len(w.buf) < 4096 {
			w.buf = append(w.buf, c)
		}
	}
	return len(p), nil
}
