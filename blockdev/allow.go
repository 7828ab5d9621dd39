package blockdev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
)

// AllowList is what a receiver may write: block devices, files and
// directories named by the receiver's own administrator, never by a
// sender. The zero value (or nil) allows nothing.
//
// A pattern is an absolute path, with Go's path.Match globs in any
// element ("/dev/sd?", "/srv/images/*.img"; '*' never crosses a '/'):
//
//	/dev/sda           exactly that path (a device, a file, or a directory
//	                   an archive is unpacked into)
//	/srv/images/*.img  every path the glob matches, one level
//	/srv/images/**     /srv/images and everything below it, at any depth
//	/srv/images/       the same ("/" alone allows everything)
//
// '**' may only be the last element, and '..' may not appear at all.
// A block device is allowed only by a pattern that names paths (a
// literal or a glob: "/dev/sda", "/dev/sd?"), never by a directory
// pattern ("/srv/images/**", "/"): an archive unpacked below an allowed
// directory may hold device nodes, and they must not open the disks they
// point at.
// Patterns match the real path of a destination: its symbolic links are
// resolved first (ResolvePath), so a link /srv/images/x -> /etc cannot
// widen "/srv/images/**". The literal part of a pattern (its elements
// before the first one holding a glob character) is resolved too, so the
// administrator's own links work: "/dev/disk/by-id/ata-X" allows the
// device it points to when the item is opened.
//
// Match is pure and may be called concurrently; Check reads the
// filesystem.
type AllowList struct {
	pats []allowPattern
}

type allowPattern struct {
	text string // as given, for messages
	glob string // absolute, clean; without the "/**" or trailing "/"
	tree bool   // glob and everything below it
	lit  string // the literal prefix of glob (no glob characters)
	rest string // the rest of glob after lit ("" when glob is literal)
}

// ParseAllowList parses patterns (see AllowList). It fails on the first
// bad one, naming it: a relative or empty pattern, '..', '**' other than
// as the last element, or a malformed glob ("/dev/sd[").
func ParseAllowList(patterns []string) (*AllowList, error) {
	l := &AllowList{}
	for _, s := range patterns {
		p, err := parseAllowPattern(s)
		if err != nil {
			return nil, err
		}
		l.pats = append(l.pats, p)
	}
	return l, nil
}

// ErrBadAllowPattern is wrapped by ParseAllowList's errors.
var ErrBadAllowPattern = errors.New("blockdev: bad allow pattern")

func parseAllowPattern(s string) (allowPattern, error) {
	bad := func(why string) (allowPattern, error) {
		return allowPattern{}, fmt.Errorf("%w %q: %s", ErrBadAllowPattern, s, why)
	}
	g := strings.TrimSpace(s)
	switch {
	case g == "":
		return bad("empty")
	case !strings.HasPrefix(g, "/"):
		return bad("not an absolute path (patterns name paths on this node, like /dev/sda or /srv/images/**)")
	case strings.ContainsRune(g, 0):
		return bad("holds a NUL byte")
	}
	p := allowPattern{text: g}
	switch {
	case strings.HasSuffix(g, "/**"):
		p.tree, g = true, strings.TrimSuffix(g, "/**")
	case strings.HasSuffix(g, "/"):
		p.tree, g = true, strings.TrimRight(g, "/")
	}
	for _, e := range strings.Split(g, "/") {
		switch {
		case e == "..":
			return bad("'..' is not allowed in a pattern")
		case strings.Contains(e, "**"):
			return bad("'**' may only be the last element (DIR/**: DIR and everything below it)")
		}
	}
	p.glob = path.Clean("/" + g)
	if _, err := path.Match(p.glob, ""); err != nil {
		return bad("malformed glob (" + err.Error() + ")")
	}
	p.lit, p.rest = p.glob, ""
	elems := strings.Split(p.glob, "/")
	for i, e := range elems {
		if strings.ContainsAny(e, `*?[\`) {
			p.lit = "/" + strings.Join(elems[1:i], "/")
			p.rest = strings.Join(elems[i:], "/")
			break
		}
	}
	return p, nil
}

// String returns the patterns as given, separated by ", ".
func (l *AllowList) String() string {
	if l == nil || len(l.pats) == 0 {
		return "nothing"
	}
	s := make([]string, len(l.pats))
	for i, p := range l.pats {
		s[i] = p.text
	}
	return strings.Join(s, ", ")
}

// Match reports whether the list allows the path p, taken literally: p
// must be absolute, and it is cleaned first (so "/srv/images/../../etc"
// is "/etc"). It reads nothing: callers resolve symbolic links first
// (Check does).
func (l *AllowList) Match(p string) bool { return l.match(p, false) }

// MatchDevice is Match for a block device at p: directory patterns do
// not count (see AllowList).
func (l *AllowList) MatchDevice(p string) bool { return l.match(p, true) }

func (l *AllowList) match(p string, device bool) bool {
	if l == nil || !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return false
	}
	p = path.Clean(p)
	for _, pat := range l.pats {
		if (!device || !pat.tree) && matchGlob(pat.glob, pat.tree, p) {
			return true
		}
	}
	return false
}

// matchGlob reports whether p (absolute, clean) is glob or, when tree is
// set, below a path that glob matches.
func matchGlob(glob string, tree bool, p string) bool {
	for {
		if ok, _ := path.Match(glob, p); ok || glob == p {
			return true
		}
		if !tree || p == "/" {
			return false
		}
		p = path.Dir(p)
	}
}

// Check resolves dest (an absolute path) with ResolvePath and returns the
// real path if the list allows it, else an error wrapping ErrNotAllowed
// that names dest, what it resolves to and the list. Open the returned
// path, not dest: it is the one that was checked.
func (l *AllowList) Check(dest string) (string, error) {
	if !strings.HasPrefix(dest, "/") {
		return "", fmt.Errorf("%q is not an absolute path: %w", dest, ErrNotAllowed)
	}
	real, err := ResolvePath(dest)
	if err != nil {
		return "", err
	}
	if l.allows(real, false) {
		return real, nil
	}
	if real != dest {
		return "", fmt.Errorf("%s resolves to %s, which is not in the allow list (%s): %w", dest, real, l, ErrNotAllowed)
	}
	return "", fmt.Errorf("%s is not in the allow list (%s): %w", dest, l, ErrNotAllowed)
}

// AllowsDevice reports whether real, a path Check returned, may be
// written as a block device: only patterns that name paths count, not
// directory patterns (see AllowList). Like Check, it resolves the
// literal part of the patterns.
func (l *AllowList) AllowsDevice(real string) bool { return l.allows(real, true) }

// allows matches the real path against every pattern (directory patterns
// excepted for a device), as written and with its literal prefix
// resolved.
func (l *AllowList) allows(real string, device bool) bool {
	if l.match(real, device) {
		return true
	}
	if l == nil {
		return false
	}
	for _, pat := range l.pats {
		if device && pat.tree {
			continue
		}
		r, err := ResolvePath(pat.lit)
		if err != nil || r == pat.lit {
			continue
		}
		if matchGlob(path.Join(r, pat.rest), pat.tree, real) {
			return true
		}
	}
	return false
}

// maxLinks bounds the symbolic links ResolvePath follows, like the
// kernel's ELOOP limit.
const maxLinks = 40

// ResolvePath returns the absolute path p with every symbolic link in the
// part of it that exists resolved, dangling links included (a link to a
// file not created yet resolves to that file), and "." and ".." applied
// as the kernel does (after a link, ".." is the parent of its target).
// The part that does not exist is appended as it is, cleaned. Opening the
// result creates or writes the same file opening p would, as long as
// nobody changes the filesystem in between. It fails when an element
// that exists is not a directory, or after 40 links (a loop).
func ResolvePath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("resolve %q: not an absolute path", p)
	}
	todo := strings.Split(p, "/")
	done := "/"
	links := 0
	for len(todo) > 0 {
		e := todo[0]
		todo = todo[1:]
		switch e {
		case "", ".":
			continue
		case "..":
			done = path.Dir(done)
			continue
		}
		// Every element is looked at, also below one that does not
		// exist: a ".." may come back to existing directories.
		next := path.Join(done, e)
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			done = next
			continue
		case errors.Is(err, syscall.ENOTDIR):
			return "", fmt.Errorf("resolve %s: %s is not a directory", p, done)
		case err != nil:
			return "", fmt.Errorf("resolve %s: %w", p, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("resolve %s: more than %d symbolic links (a loop?)", p, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %w", p, err)
		}
		if strings.HasPrefix(target, "/") {
			done = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return done, nil
}
