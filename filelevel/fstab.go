package filelevel

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// FstabEntry is one mount line of an fstab.
type FstabEntry struct {
	Line int    // 1-based
	Spec string // first field as written: UUID=…, LABEL=…, /dev/sda1…
	File string // mount point, octal escapes (\040) decoded; "none" or "swap" for swap
	Type string // filesystem type; "" when the line has only two fields
}

// FstabError is a parse error in an fstab; it names the line.
type FstabError struct {
	Line int
	Msg  string
}

func (e *FstabError) Error() string { return fmt.Sprintf("fstab:%d: %s", e.Line, e.Msg) }

// ParseFstab reads the mount lines of an fstab. Blank lines and `#`
// comments are skipped; a line with a single field is an error.
func ParseFstab(text []byte) ([]FstabEntry, error) {
	var out []FstabEntry
	for i, line := range strings.Split(string(text), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 {
			return nil, &FstabError{Line: i + 1, Msg: fmt.Sprintf("%q has no mount point field", f[0])}
		}
		e := FstabEntry{Line: i + 1, Spec: f[0], File: unescapeFstab(f[1])}
		if len(f) > 2 {
			e.Type = f[2]
		}
		out = append(out, e)
	}
	return out, nil
}

// unescapeFstab decodes the \NNN octal escapes fstab uses for spaces
// and tabs in fields.
func unescapeFstab(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// NewFS is a filesystem made on a node, as the fix-ups see it.
type NewFS struct {
	Mount string // clean mount point; "" for swap
	FS    string // ext4, xfs, vfat, swap...
	UUID  string
	Label string
	Name  string // GPT partition name
}

// spec returns the fstab spec naming f: UUID=, or the kept LABEL= or
// PARTLABEL= when it still names f.
func (f NewFS) spec(old string) string {
	if l, ok := strings.CutPrefix(old, "LABEL="); ok && f.Label != "" && l == f.Label {
		return old
	}
	if l, ok := strings.CutPrefix(old, "PARTLABEL="); ok && f.Name != "" && l == f.Name {
		return old
	}
	return "UUID=" + f.UUID
}

// Change is one fix-up made to a file of the new system.
type Change struct {
	File string // path in the new system (/etc/fstab)
	Line int    // 1-based line of the change (after it); 0 for a whole file
	Old  string
	New  string
}

func (c Change) String() string {
	if c.Old == "" {
		return fmt.Sprintf("%s:%d: added %s", c.File, c.Line, c.New)
	}
	return fmt.Sprintf("%s:%d: %s -> %s", c.File, c.Line, c.Old, c.New)
}

// RewriteFstab points the entries of an fstab at the node's new
// filesystems: the entry whose mount point is a new filesystem's gets
// that filesystem's UUID= (a LABEL= or PARTLABEL= that still names it is
// kept), the n-th swap entry gets the n-th new swap's. Other lines
// (comments, tmpfs, network filesystems) are kept byte for byte; a new
// filesystem without an entry gets one appended. It returns the new text,
// what changed, and the old spec → new spec of every rewritten entry
// (for the boot configuration).
func RewriteFstab(text []byte, fss []NewFS) ([]byte, []Change, map[string]string, error) {
	ents, err := ParseFstab(text)
	if err != nil {
		return nil, nil, nil, err
	}
	byMount := map[string]NewFS{}
	var swaps []NewFS
	for _, f := range fss {
		if f.FS == "swap" {
			swaps = append(swaps, f)
		} else if f.Mount != "" {
			byMount[path.Clean(f.Mount)] = f
		}
	}
	lines := strings.Split(string(text), "\n")
	var changes []Change
	specs := map[string]string{}
	used := map[string]bool{}
	nswap := 0
	for _, e := range ents {
		var nf NewFS
		var ok bool
		if e.Type == "swap" {
			if nswap < len(swaps) {
				nf, ok = swaps[nswap], true
				nswap++
			}
		} else if strings.HasPrefix(e.File, "/") {
			nf, ok = byMount[path.Clean(e.File)]
			if ok && used[nf.Mount] {
				ok = false // a second entry for the same mount point stays as it is
			}
		}
		if !ok {
			continue
		}
		used[nf.Mount] = true
		ns := nf.spec(e.Spec)
		if ns == e.Spec {
			continue
		}
		line := lines[e.Line-1]
		i := strings.Index(line, e.Spec)
		lines[e.Line-1] = line[:i] + ns + line[i+len(e.Spec):]
		changes = append(changes, Change{File: "/etc/fstab", Line: e.Line, Old: e.Spec, New: ns})
		specs[e.Spec] = ns
	}
	out := strings.Join(lines, "\n")
	var add []string
	for _, f := range fss {
		switch {
		case f.FS == "swap" && nswap > 0:
			nswap--
			continue
		case f.FS == "swap":
			add = append(add, fmt.Sprintf("UUID=%s none swap sw 0 0", f.UUID))
		case f.Mount != "" && !used[path.Clean(f.Mount)]:
			pass := 2
			if path.Clean(f.Mount) == "/" {
				pass = 1
			}
			if f.FS == "xfs" {
				pass = 0 // xfs is checked at mount time
			}
			add = append(add, fmt.Sprintf("UUID=%s %s %s defaults 0 %d", f.UUID, escapeFstab(path.Clean(f.Mount)), f.FS, pass))
		}
	}
	if len(add) > 0 {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		n := strings.Count(out, "\n")
		for i, a := range add {
			changes = append(changes, Change{File: "/etc/fstab", Line: n + i + 1, New: a})
			out += a + "\n"
		}
	}
	return []byte(out), changes, specs, nil
}

// escapeFstab escapes spaces, tabs and backslashes in an fstab field.
func escapeFstab(s string) string {
	r := strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`)
	return r.Replace(s)
}

// RewriteBootConfig points a boot loader configuration (extlinux.conf,
// syslinux.cfg, grub.cfg) at the node's new filesystems: every root=
// kernel parameter gets rootSpec, every resume= gets resumeSpec (when
// not ""), and every old UUID named in uuids (old → new) is replaced
// wherever it appears (grub's search --fs-uuid, for example). It returns
// the new text and one Change per rewritten line.
func RewriteBootConfig(name string, text []byte, rootSpec, resumeSpec string, uuids map[string]string) ([]byte, []Change) {
	lines := bytes.Split(text, []byte("\n"))
	var changes []Change
	for i, l := range lines {
		old := string(l)
		s := old
		for oldU, newU := range uuids {
			if oldU != "" && oldU != newU {
				s = strings.ReplaceAll(s, oldU, newU)
			}
		}
		s = replaceParam(s, "root=", rootSpec)
		s = replaceParam(s, "resume=", resumeSpec)
		if s != old {
			lines[i] = []byte(s)
			changes = append(changes, Change{File: name, Line: i + 1, Old: strings.TrimSpace(old), New: strings.TrimSpace(s)})
		}
	}
	return bytes.Join(lines, []byte("\n")), changes
}

// replaceParam sets the value of every whitespace-separated key=value
// word of line with key to v (v "" leaves them).
func replaceParam(line, key, v string) string {
	if v == "" || !strings.Contains(line, key) {
		return line
	}
	var b strings.Builder
	for i := 0; i < len(line); {
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		word := line[i:j]
		if strings.HasPrefix(word, key) {
			word = key + v
		}
		b.WriteString(word)
		k := j
		for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
			k++
		}
		b.WriteString(line[j:k])
		i = k
	}
	return b.String()
}
