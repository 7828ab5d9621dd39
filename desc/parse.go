package desc

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/herd-cluster/herd/internal/units"
)

// maxGPTParts is the number of entries herd writes in a GPT.
const maxGPTParts = 128

// token is a word of a desc line with its 1-based byte column.
type token struct {
	text string
	col  int
}

// tokenize splits a line into words, dropping a # comment. Double
// quotes group a value with spaces or # (label="EFI System"); it returns
// the column of an unterminated quote, or 0.
func tokenize(line string) ([]token, int) {
	var toks []token
	start, quote := -1, -1
	for i := 0; i <= len(line); i++ {
		end := i == len(line) || (quote < 0 && line[i] == '#')
		space := end || (quote < 0 && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\v' || line[i] == '\f'))
		switch {
		case end && quote >= 0:
			return nil, quote + 1
		case space && start >= 0:
			toks = append(toks, token{line[start:i], start + 1})
			start = -1
		case !space && start < 0:
			start = i
		}
		if end {
			break
		}
		if !space && line[i] == '"' {
			if quote < 0 {
				quote = i
			} else {
				quote = -1
			}
		}
	}
	return toks, 0
}

// unquote strips the double quotes of a value; ok is false when quotes
// appear elsewhere than around the whole value.
func unquote(v string) (string, bool) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	return v, !strings.Contains(v, `"`)
}

// quote formats a value so tokenize reads it back as one word.
func quote(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\r\v\f#") {
		return `"` + v + `"`
	}
	return v
}

// Parse reads desc text: KA's lines `[logical] TYPE SIZE` unchanged, plus
// herd's extensions (see docs/desc.md). It checks everything that does
// not depend on the disk size; the error is a *ParseError naming the
// line and column.
func Parse(text string) (*Desc, error) {
	d := &Desc{}
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		if err := d.parseLine(i+1, line); err != nil {
			return nil, err
		}
	}
	if len(d.Parts) == 0 {
		return nil, &ParseError{Line: len(lines), Col: 1, Msg: "no partitions: a desc needs at least one partition line"}
	}
	if err := d.validate(); err != nil {
		return nil, err
	}
	return d, nil
}

func perr(line, col int, format string, a ...any) *ParseError {
	return &ParseError{Line: line, Col: col, Msg: fmt.Sprintf(format, a...)}
}

func (d *Desc) parseLine(n int, line string) error {
	toks, qcol := tokenize(line)
	if qcol != 0 {
		return perr(n, qcol, "unterminated double quote")
	}
	if len(toks) == 0 {
		return nil
	}
	first := strings.ToLower(toks[0].text)
	if first == "table" {
		if len(toks) != 2 {
			return perr(n, toks[0].col, "want `table mbr` or `table gpt`")
		}
		if d.TableLine != 0 {
			return perr(n, toks[0].col, "second `table` line (the first is line %d)", d.TableLine)
		}
		if len(d.Parts) > 0 {
			return perr(n, toks[0].col, "`table` must come before the first partition (line %d)", d.Parts[0].Line)
		}
		switch strings.ToLower(toks[1].text) {
		case "mbr", "dos", "msdos":
			d.Table = MBR
		case "gpt":
			d.Table = GPT
		default:
			return perr(n, toks[1].col, "unknown table kind %q: want mbr or gpt", toks[1].text)
		}
		d.TableLine = n
		return nil
	}
	p := Part{Line: n}
	rest := toks
	switch first {
	case "logical":
		p.Logical = true
		rest = rest[1:]
	case "primary":
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return perr(n, len(line)+1, "missing partition type after %q", toks[0].text)
	}
	t, ok := LookupType(rest[0].text)
	if !ok {
		return perr(n, rest[0].col, "unknown partition type %q: want linux, swap, extended, esp, bios, lvm, raid, fat, typeNN (hex) or a GPT type GUID", rest[0].text)
	}
	p.Type = t
	p.cols[0] = rest[0].col
	if len(rest) == 1 {
		return perr(n, len(strings.TrimRight(line, " \t\r"))+1, "missing size after %q: want MB, a size with unit (512M, 20G), a percentage (25%%) or fill", rest[0].text)
	}
	sz, err := ParseSize(rest[1].text)
	if err != nil {
		return perr(n, rest[1].col, "%v", err)
	}
	p.Size = sz
	p.cols[1] = rest[1].col
	seen := map[string]bool{}
	for _, tk := range rest[2:] {
		key, val, isKV := strings.Cut(tk.text, "=")
		key = strings.ToLower(key)
		if seen[key] {
			return perr(n, tk.col, "%q given twice", key)
		}
		seen[key] = true
		if !isKV {
			switch key {
			case "boot":
				p.Boot = true
			case "esp":
				p.Type, _ = LookupType("esp")
			case "bios_grub":
				p.Type, _ = LookupType("bios")
			default:
				return perr(n, tk.col, "unknown flag %q: want boot, esp, bios_grub, or key=value (fs, label, name, mount, uuid)", tk.text)
			}
			continue
		}
		vcol := tk.col + len(key) + 1
		val, ok := unquote(val)
		if !ok {
			return perr(n, vcol, "bad quotes in %q: quote the whole value, which cannot hold a double quote", tk.text)
		}
		if val == "" {
			return perr(n, vcol, "empty value for %q", key)
		}
		switch key {
		case "fs":
			v := strings.ToLower(val)
			if v == "ext" {
				v = "ext4"
			}
			if v == "fat" || v == "fat32" || v == "msdos" {
				v = "vfat"
			}
			if _, ok := filesystems[v]; !ok {
				return perr(n, vcol, "unknown filesystem %q: want ext2, ext3, ext4, xfs, vfat, swap or none", val)
			}
			p.FS = v
		case "label":
			p.Label = val
		case "name":
			if len(utf16.Encode([]rune(val))) > 36 {
				return perr(n, vcol, "GPT name %q longer than 36 UTF-16 characters", val)
			}
			p.Name = val
		case "mount":
			if !strings.HasPrefix(val, "/") {
				return perr(n, vcol, "mount point %q must be an absolute path", val)
			}
			p.Mount = val
		case "uuid":
			if !validFSUUID(val) {
				return perr(n, vcol, "bad uuid %q: want 8-4-4-4-12 hex digits, or XXXX-XXXX for vfat", val)
			}
			p.UUID = val
		default:
			return perr(n, tk.col, "unknown key %q: want fs, label, name, mount or uuid", key)
		}
	}
	d.Parts = append(d.Parts, p)
	return nil
}

// validFSUUID accepts a GUID-form UUID or a FAT volume id XXXX-XXXX.
func validFSUUID(s string) bool {
	if _, err := ParseGUID(s); err == nil {
		return true
	}
	if len(s) != 9 || s[4] != '-' {
		return false
	}
	for i := 0; i < 9; i++ {
		if _, ok := hexVal(s[i]); !ok && i != 4 {
			return false
		}
	}
	return true
}

// ParseSize parses a desc size: a plain number is MiB (KA's "MB");
// units K, M, G, T (and KiB, MiB, GiB, TiB) are binary, KB, MB, GB, TB
// decimal, B bytes; N% is a percentage of the disk; fill is Fill.
func ParseSize(s string) (Size, error) {
	ls := strings.ToLower(s)
	if ls == "fill" {
		return Fill, nil
	}
	if strings.HasSuffix(ls, "%") {
		v, err := strconv.Atoi(ls[:len(ls)-1])
		if err != nil || v < 1 || v > 100 {
			return Size{}, fmt.Errorf("bad percentage %q: want 1%% to 100%%", s)
		}
		return Size{Kind: SizePercent, Percent: v}, nil
	}
	v, unit, ok := units.SplitNumber(ls)
	if !ok {
		return Size{}, fmt.Errorf("bad size %q: want MB, a size with unit (512M, 20G), a percentage (25%%) or fill", s)
	}
	mult, ok := units.SizeUnit(unit)
	if unit == "" {
		mult = MiB // KA's plain MB
	}
	if !ok {
		digits := len(ls) - len(unit) // ASCII: as many bytes in s
		return Size{}, fmt.Errorf("bad size unit %q in %q: want K, M, G, T (binary), KB, MB, GB, TB (decimal) or B", s[digits:], s)
	}
	if v == 0 {
		return Size{}, fmt.Errorf("size %q is zero", s)
	}
	if v > (1<<62)/mult {
		return Size{}, fmt.Errorf("size %q is too large", s)
	}
	return Size{Kind: SizeFixed, Bytes: v * mult}, nil
}

// validate checks the rules that span lines.
func (d *Desc) validate() error {
	var (
		primaries   int
		extLine     int
		extIdx      = -1
		lastPrim    = -1 // index of the previous primary
		lastLogical = -1
		pct         int
	)
	for i, p := range d.Parts {
		if d.Table == GPT {
			if p.Logical || p.Type.IsExtended() {
				return perr(p.Line, 1, "GPT has no extended or logical partitions: drop `logical`/`extended`, GPT holds %d partitions", maxGPTParts)
			}
			if p.Type.GUID.IsZero() {
				return perr(p.Line, wordColRaw(p, 0), "type %s has no GPT type GUID: use a type name or a GUID", p.Type.Name)
			}
		} else if p.Type.MBR == 0 {
			return perr(p.Line, wordColRaw(p, 0), "type %s exists only in GPT: add `table gpt` or use typeNN", p.Type.Name)
		}
		if p.Logical && p.Type.IsExtended() {
			return perr(p.Line, 1, "a logical partition cannot be extended")
		}
		if p.Type.IsExtended() && (p.FS != "" && p.FS != "none" || p.Label != "" || p.Mount != "" || p.UUID != "") {
			return perr(p.Line, 1, "an extended partition holds no filesystem: drop fs/label/mount/uuid")
		}
		if lim := filesystems[p.Filesystem()]; len(p.Label) > lim {
			return perr(p.Line, 1, "label %q too long for %s (max %d bytes)", p.Label, p.Filesystem(), lim)
		}
		if p.Size.Kind == SizePercent {
			pct += p.Size.Percent
			if pct > 100 {
				return perr(p.Line, 1, "percentages add up to %d%%, more than the disk", pct)
			}
		}
		if p.Logical {
			if extIdx < 0 {
				return perr(p.Line, 1, "logical partition without an extended partition before it")
			}
			if i > 0 && !d.Parts[i-1].Logical && i-1 != extIdx {
				return perr(p.Line, 1, "logical partition must follow its extended partition (line %d) or another logical one", extLine)
			}
			if lastLogical >= 0 && d.Parts[lastLogical].Size.Kind == SizeFill {
				f := d.Parts[lastLogical]
				return perr(f.Line, wordColRaw(f, 1), "`fill` must be the last logical partition, but line %d follows it", p.Line)
			}
			lastLogical = i
			continue
		}
		if lastPrim >= 0 && d.Parts[lastPrim].Size.Kind == SizeFill {
			f := d.Parts[lastPrim]
			return perr(f.Line, wordColRaw(f, 1), "`fill` must be the last primary partition, but line %d follows it", p.Line)
		}
		lastPrim = i
		primaries++
		if d.Table == MBR && primaries > 4 {
			return perr(p.Line, 1, "too many primary partitions: an MBR holds 4 (extended included); use `extended` and `logical`, or `table gpt`")
		}
		if d.Table == GPT && primaries > maxGPTParts {
			return perr(p.Line, 1, "too many partitions: herd's GPT holds %d", maxGPTParts)
		}
		if p.Type.IsExtended() {
			if extIdx >= 0 {
				return perr(p.Line, 1, "second extended partition (the first is line %d): an MBR holds one", extLine)
			}
			extIdx, extLine = i, p.Line
		}
	}
	// Fixed logicals must fit in a fixed extended (each takes 1 MiB for its EBR).
	if extIdx >= 0 && d.Parts[extIdx].Size.Kind == SizeFixed {
		room := alignUp(d.Parts[extIdx].Size.Bytes, MiB)
		used := int64(0)
		for _, p := range d.Parts[extIdx+1:] {
			if !p.Logical {
				break
			}
			need := MiB
			switch p.Size.Kind {
			case SizeFixed:
				need += alignUp(p.Size.Bytes, MiB)
			default:
				need += MiB
			}
			used += need
			if used > room {
				return &ParseError{Line: p.Line, Col: wordColRaw(p, 1), Err: ErrTooSmall,
					Msg: fmt.Sprintf("logical partitions do not fit in the extended partition of line %d: %s needed (1 MiB per EBR included), %s available", extLine, human(used), human(room))}
			}
		}
	}
	return nil
}

func alignUp(v, a int64) int64 { return (v + a - 1) / a * a }

// wordColRaw is the column of the k-th word after the optional
// primary/logical keyword (0 = type, 1 = size), or 1 when the part was
// built in code. The columns are recorded at parse time.
func wordColRaw(p Part, k int) int {
	if p.cols[k] == 0 {
		return 1
	}
	return p.cols[k]
}

// human formats a byte count with a binary unit.
func human(b int64) string {
	switch {
	case b >= TiB:
		return fmt.Sprintf("%.2f TiB", float64(b)/float64(TiB))
	case b >= GiB:
		return fmt.Sprintf("%.2f GiB", float64(b)/float64(GiB))
	case b >= MiB:
		return fmt.Sprintf("%.2f MiB", float64(b)/float64(MiB))
	}
	return fmt.Sprintf("%d B", b)
}
