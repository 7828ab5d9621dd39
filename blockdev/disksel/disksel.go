// Package disksel picks the disk a PXE-booted machine writes, from a
// rule the operator gives once for a whole cluster (herd deploy --disk):
// a device path, or properties every machine's target disk shares
// ("model=PERC*", "size>=100G", "largest", "serial=S3Z…"). It never picks
// removable media, a read-only device or a disk with a mounted
// partition, and a rule that fits more than one disk is an error naming
// them: on a machine it does not understand, the agent writes nothing.
//
// Parse and Select hold no I/O and are tested without disks; Scan reads
// the candidates from sysfs and /proc/mounts.
//
// Usage:
//
//	rule, err := disksel.Parse("model=PERC*,largest")
//	disks, err := disksel.Scan("/sys", mounts)
//	d, err := rule.Select(disks) // d.Path is "/dev/sdb"
//
// Public: herd deploy checks a rule with Parse before any machine boots.
package disksel

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/herd-cluster/herd/internal/units"
)

// Errors of Select; both carry the list of disks seen.
var (
	// ErrBadRule means the rule cannot be parsed.
	ErrBadRule = errors.New("disksel: bad disk rule")
	// ErrNoDisk means no disk fits the rule.
	ErrNoDisk = errors.New("disksel: no disk fits")
	// ErrAmbiguous means several disks fit and the rule does not say
	// which one.
	ErrAmbiguous = errors.New("disksel: several disks fit")
)

// Auto is the rule of the one obvious disk: the only disk that may be
// written at all.
const Auto = "auto"

// Disk is a whole disk as the kernel sees it.
type Disk struct {
	// Name is the kernel's name ("sda", "nvme0n1").
	Name string
	// Path is its device node ("/dev/sda").
	Path string
	// Size in bytes.
	Size int64
	// Model and Serial as the device reports them (may be empty).
	Model, Serial string
	// Paths are its names under /dev/disk/by-path, as udev would make
	// them (none when herd does not know its bus).
	Paths []string
	// Removable, ReadOnly and Mounted (the disk or one of its
	// partitions is mounted) exclude the disk from any rule.
	Removable, ReadOnly, Mounted bool
}

// String describes d for an error or a diagnostic line.
func (d Disk) String() string {
	s := fmt.Sprintf("%s %s", d.Path, humanSize(d.Size))
	if d.Model != "" {
		s += " model=" + quoteIfSpace(d.Model)
	}
	if d.Serial != "" {
		s += " serial=" + quoteIfSpace(d.Serial)
	}
	if len(d.Paths) > 0 {
		s += " path=" + d.Paths[0]
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{d.Removable, "removable"}, {d.ReadOnly, "read-only"}, {d.Mounted, "mounted"}} {
		if f.on {
			s += " " + f.name
		}
	}
	return s
}

func quoteIfSpace(s string) string {
	if strings.ContainsAny(s, " \t") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// excluded says why no rule may pick d, or "".
func (d Disk) excluded() string {
	switch {
	case d.Removable:
		return "removable"
	case d.ReadOnly:
		return "read-only"
	case d.Mounted:
		return "mounted"
	case d.Size == 0:
		return "empty (no medium)"
	}
	return ""
}

// Rule selects one disk.
type Rule struct {
	text string
	// path, when set, names the device; the other fields are unused.
	path          string
	model, serial string // shell patterns, case-insensitive
	byPath        string // a shell pattern matched against Disk.Paths
	minSize       int64
	maxSize       int64 // 0: no bound
	pick          string
}

// String returns the rule as given.
func (r Rule) String() string { return r.text }

// MaxRuleLen bounds a rule (it travels on the kernel command line).
const MaxRuleLen = 256

// Parse reads a rule: "auto" (or ""), a path under /dev (a
// /dev/disk/by-path/NAME is matched against the names herd works out
// for each disk, since the agent has no udev), or terms joined by
// commas: model=PATTERN, serial=PATTERN, path=PATTERN (a by-path name;
// shell patterns, no commas or spaces, case-insensitive), size>=SIZE,
// size<=SIZE (units.ParseSize: 100G, 1T, 500GB), and at most one of
// largest or smallest, which picks among the disks the other terms
// leave.
func Parse(s string) (Rule, error) {
	r := Rule{text: s}
	if s == "" || s == Auto {
		r.text = Auto
		return r, nil
	}
	if len(s) > MaxRuleLen {
		return Rule{}, fmt.Errorf("%w: %d characters, more than %d", ErrBadRule, len(s), MaxRuleLen)
	}
	if strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c > '~' || c == '"' || c == '\'' || c == '\\' }) {
		return Rule{}, fmt.Errorf("%w: %q: no spaces, quotes or backslashes", ErrBadRule, s)
	}
	if strings.HasPrefix(s, "/") {
		if !strings.HasPrefix(s, "/dev/") || path.Clean(s) != s {
			return Rule{}, fmt.Errorf("%w: %q: a path must be a clean path under /dev", ErrBadRule, s)
		}
		if name, ok := strings.CutPrefix(s, "/dev/disk/by-path/"); ok {
			if name == "" || strings.Contains(name, "/") {
				return Rule{}, fmt.Errorf("%w: %q: want /dev/disk/by-path/NAME", ErrBadRule, s)
			}
			r.byPath = strings.ToLower(name)
			if _, err := path.Match(r.byPath, ""); err != nil || strings.ContainsAny(name, "*?[") {
				return Rule{}, fmt.Errorf("%w: %q: a by-path name has no pattern characters (use path=PATTERN)", ErrBadRule, s)
			}
			return r, nil
		}
		r.path = s
		return r, nil
	}
	for _, t := range strings.Split(s, ",") {
		var err error
		switch {
		case t == "largest" || t == "smallest":
			if r.pick != "" {
				return Rule{}, fmt.Errorf("%w: %q: %s and %s", ErrBadRule, s, r.pick, t)
			}
			r.pick = t
		case strings.HasPrefix(t, "model="):
			r.model, err = pattern(s, t)
		case strings.HasPrefix(t, "serial="):
			r.serial, err = pattern(s, t)
		case strings.HasPrefix(t, "path="):
			r.byPath, err = pattern(s, t)
		case strings.HasPrefix(t, "size>="):
			r.minSize, err = size(s, t)
		case strings.HasPrefix(t, "size<="):
			r.maxSize, err = size(s, t)
		default:
			return Rule{}, fmt.Errorf("%w: %q: unknown term %q (want a /dev path, auto, model=, serial=, path=, size>=, size<=, largest or smallest)", ErrBadRule, s, t)
		}
		if err != nil {
			return Rule{}, err
		}
	}
	if r.maxSize > 0 && r.maxSize < r.minSize {
		return Rule{}, fmt.Errorf("%w: %q: no size is both >= %s and <= %s", ErrBadRule, s, humanSize(r.minSize), humanSize(r.maxSize))
	}
	return r, nil
}

func pattern(rule, term string) (string, error) {
	_, v, _ := strings.Cut(term, "=")
	if v == "" {
		return "", fmt.Errorf("%w: %q: %q has no value", ErrBadRule, rule, term)
	}
	v = strings.ToLower(v)
	if _, err := path.Match(v, ""); err != nil {
		return "", fmt.Errorf("%w: %q: pattern %q: %v", ErrBadRule, rule, v, err)
	}
	return v, nil
}

func size(rule, term string) (int64, error) {
	v := term[len("size>="):]
	n, err := units.ParseSize(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%w: %q: size %q: want a size like 100G or 500GB", ErrBadRule, rule, v)
	}
	return n, nil
}

// Select returns the disk of disks the rule picks, or an error naming
// the disks it saw and why none or several fit.
func (r Rule) Select(disks []Disk) (Disk, error) {
	sorted := append([]Disk(nil), disks...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	seen := describe(sorted)
	if r.path != "" {
		for _, d := range sorted {
			if d.Path == r.path {
				if why := d.excluded(); why != "" {
					return Disk{}, fmt.Errorf("%w: %s is %s; disks: %s", ErrNoDisk, d.Path, why, seen)
				}
				return d, nil
			}
		}
		return Disk{}, fmt.Errorf("%w: no disk %s; disks: %s", ErrNoDisk, r.path, seen)
	}
	var fit []Disk
	for _, d := range sorted {
		if d.excluded() != "" || !r.matches(d) {
			continue
		}
		fit = append(fit, d)
	}
	switch {
	case len(fit) == 0:
		return Disk{}, fmt.Errorf("%w rule %s; disks: %s", ErrNoDisk, r.text, seen)
	case r.pick != "":
		sort.SliceStable(fit, func(i, j int) bool {
			if r.pick == "largest" {
				return fit[i].Size > fit[j].Size
			}
			return fit[i].Size < fit[j].Size
		})
		if len(fit) > 1 && fit[0].Size == fit[1].Size {
			return Disk{}, fmt.Errorf("%w rule %s: %s and %s have the same size; add model= or serial=", ErrAmbiguous, r.text, fit[0].Path, fit[1].Path)
		}
		return fit[0], nil
	case len(fit) > 1:
		return Disk{}, fmt.Errorf("%w rule %s: %s; narrow it with model=, serial=, size>=, size<=, largest or smallest", ErrAmbiguous, r.text, describe(fit))
	}
	return fit[0], nil
}

func (r Rule) matches(d Disk) bool {
	if r.model != "" {
		if ok, _ := path.Match(r.model, strings.ToLower(d.Model)); !ok {
			return false
		}
	}
	if r.serial != "" {
		if ok, _ := path.Match(r.serial, strings.ToLower(d.Serial)); !ok {
			return false
		}
	}
	if r.byPath != "" {
		found := false
		for _, p := range d.Paths {
			if ok, _ := path.Match(r.byPath, strings.ToLower(p)); ok {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	if d.Size < r.minSize || r.maxSize > 0 && d.Size > r.maxSize {
		return false
	}
	return true
}

func describe(ds []Disk) string {
	if len(ds) == 0 {
		return "none"
	}
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.String()
	}
	return strings.Join(parts, "; ")
}

// humanSize writes n bytes in the largest binary unit that keeps one
// decimal ("80.0MiB", "1.8TiB").
func humanSize(n int64) string {
	f, unit := float64(n), "B"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		if f < 1024 {
			break
		}
		f, unit = f/1024, u
	}
	if unit == "B" {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.1f%s", f, unit)
}
