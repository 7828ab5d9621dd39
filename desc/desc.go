package desc

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors callers can branch on with errors.Is.
var (
	// ErrTooSmall: the disk cannot hold the fixed-size partitions.
	ErrTooSmall = errors.New("desc: disk too small")
	// ErrNoTable: the disk has no MBR signature, hence no table.
	ErrNoTable = errors.New("desc: no partition table")
	// ErrBadTable: a table was found but it is corrupt or inconsistent.
	ErrBadTable = errors.New("desc: bad partition table")
	// ErrInvalidPlan: a plan cannot be encoded (overlaps, limits of the table kind).
	ErrInvalidPlan = errors.New("desc: invalid plan")
	// ErrInUse: the target device is mounted or used by another device.
	ErrInUse = errors.New("desc: device in use")
)

// ParseError is a parse or validation error at a position of the desc
// text. Line and Col are 1-based (Col counts bytes); Line is 0 when the
// error concerns the whole desc. Err, when set, is a sentinel such as
// ErrTooSmall.
type ParseError struct {
	Line, Col int
	Msg       string
	Err       error
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return "desc: " + e.Msg
	}
	return fmt.Sprintf("desc:%d:%d: %s", e.Line, e.Col, e.Msg)
}

// Unwrap returns the sentinel behind the error, if any.
func (e *ParseError) Unwrap() error { return e.Err }

// TableKind is the kind of partition table: MBR (the zero value, KA's
// only kind) or GPT.
type TableKind int

const (
	// MBR is the DOS table: four primary slots, one of which may be an
	// extended partition holding a chain of logical ones.
	MBR TableKind = iota
	// GPT is the GUID partition table (with a protective MBR and a backup
	// copy at the end of the disk).
	GPT
)

func (k TableKind) String() string {
	if k == GPT {
		return "gpt"
	}
	return "mbr"
}

// MarshalText formats k as "mbr" or "gpt" (for JSON).
func (k TableKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses "mbr" or "gpt".
func (k *TableKind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "mbr":
		*k = MBR
	case "gpt":
		*k = GPT
	default:
		return fmt.Errorf("desc: table kind %q: want mbr or gpt", b)
	}
	return nil
}

// SizeKind says how a Size is given.
type SizeKind int

const (
	// SizeFixed is a number of bytes (rounded up to 1 MiB by Layout).
	SizeFixed SizeKind = iota
	// SizePercent is a percentage of the disk's usable area.
	SizePercent
	// SizeFill takes all the space left in the partition's container.
	SizeFill
)

// Size is the size of a partition in a desc.
type Size struct {
	Kind    SizeKind
	Bytes   int64 // SizeFixed only
	Percent int   // SizePercent only, 1..100
}

// Fill is the Size that stretches to the end of its container.
var Fill = Size{Kind: SizeFill}

// String formats s in desc syntax: whole MiB as a plain number (KA's
// "MB"), else K; percentages with %; "fill".
func (s Size) String() string {
	switch s.Kind {
	case SizeFill:
		return "fill"
	case SizePercent:
		return fmt.Sprintf("%d%%", s.Percent)
	}
	switch {
	case s.Bytes%MiB == 0:
		return fmt.Sprintf("%d", s.Bytes/MiB)
	case s.Bytes%KiB == 0:
		return fmt.Sprintf("%dK", s.Bytes/KiB)
	}
	return fmt.Sprintf("%dB", s.Bytes)
}

// Byte multiples used by sizes.
const (
	KiB = int64(1) << 10
	MiB = int64(1) << 20
	GiB = int64(1) << 30
	TiB = int64(1) << 40
)

// Type is a partition type: its desc name with the MBR code and the GPT
// type GUID it stands for. A zero MBR code or zero GUID means the type
// cannot be used in that table kind.
type Type struct {
	Name string `json:"name"`
	MBR  byte   `json:"mbr,omitempty"`
	GUID GUID   `json:"guid"`
}

// IsExtended reports whether t is an MBR extended container.
func (t Type) IsExtended() bool {
	return t.MBR == 0x05 || t.MBR == 0x0f || t.MBR == 0x85
}

// knownTypes are the type names of the desc grammar. The first entry
// for a given MBR code or GUID is the one decoding yields.
var knownTypes = []Type{
	{Name: "linux", MBR: 0x83, GUID: mustGUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")},
	{Name: "swap", MBR: 0x82, GUID: mustGUID("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F")},
	{Name: "extended", MBR: 0x05},
	{Name: "esp", MBR: 0xef, GUID: mustGUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")},
	{Name: "bios", GUID: mustGUID("21686148-6449-6E6F-744E-656564454649")},
	{Name: "lvm", MBR: 0x8e, GUID: mustGUID("E6D6D379-F507-44C2-A23C-238F2A3DF928")},
	{Name: "raid", MBR: 0xfd, GUID: mustGUID("A19D880F-05FC-4D3B-A006-743F0F84911E")},
	{Name: "fat", MBR: 0x0c, GUID: mustGUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")},
}

// typeAliases are other names accepted for known types.
var typeAliases = map[string]string{"efi": "esp", "bios_grub": "bios", "data": "fat"}

// LookupType returns the type for a desc type word: a known name
// (linux, swap, extended, esp, bios, lvm, raid, fat), KA's typeNN with
// NN in hex, or a GPT type GUID.
func LookupType(word string) (Type, bool) {
	w := strings.ToLower(word)
	if a, ok := typeAliases[w]; ok {
		w = a
	}
	for _, t := range knownTypes {
		if t.Name == w {
			return t, true
		}
	}
	if strings.HasPrefix(w, "type") && len(w) > 4 && len(w) <= 6 {
		var code byte
		for _, c := range w[4:] {
			v, ok := hexVal(byte(c))
			if !ok {
				return Type{}, false
			}
			code = code<<4 | v
		}
		if code == 0 {
			return Type{}, false
		}
		t := Type{Name: fmt.Sprintf("type%02x", code), MBR: code}
		if k, ok := typeByMBR(code); ok {
			t.GUID = k.GUID
		}
		return t, true
	}
	if g, err := ParseGUID(word); err == nil && !g.IsZero() {
		if k, ok := typeByGUID(g); ok {
			return k, true
		}
		return Type{Name: g.String(), GUID: g}, true
	}
	return Type{}, false
}

// typeByMBR returns the known type with MBR code c.
func typeByMBR(c byte) (Type, bool) {
	for _, t := range knownTypes {
		if t.MBR == c {
			return t, true
		}
	}
	if c == 0x0f || c == 0x85 {
		return Type{Name: fmt.Sprintf("type%02x", c), MBR: c}, true
	}
	return Type{}, false
}

// typeByGUID returns the known type with GPT type GUID g.
func typeByGUID(g GUID) (Type, bool) {
	for _, t := range knownTypes {
		if t.GUID == g && !g.IsZero() {
			return t, true
		}
	}
	return Type{}, false
}

// mbrType returns the type decoded from MBR code c.
func mbrType(c byte) Type {
	if t, ok := typeByMBR(c); ok {
		return t
	}
	return Type{Name: fmt.Sprintf("type%02x", c), MBR: c}
}

// gptType returns the type decoded from GPT type GUID g.
func gptType(g GUID) Type {
	if t, ok := typeByGUID(g); ok {
		return t
	}
	return Type{Name: g.String(), GUID: g}
}

// Filesystems herd can make, by their desc name.
var filesystems = map[string]int{ // value: maximum label length
	"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "vfat": 11, "swap": 16, "none": 36,
}

// Part is one partition line of a desc.
type Part struct {
	Line    int  // 1-based line in the source text; 0 when built in code
	Logical bool // inside the extended partition (MBR only)
	Type    Type
	Size    Size
	FS      string // ext2, ext3, ext4, xfs, vfat, swap, none; "" for the type's default
	Label   string // filesystem label
	Name    string // GPT partition name
	Mount   string // mount point, for the file-level copy and fstab
	UUID    string // filesystem UUID to set (keeps fstab valid on clones)
	Boot    bool   // MBR active flag, GPT legacy-BIOS-bootable attribute

	cols [2]int // columns of the type and size words, for errors
}

// Filesystem returns the filesystem Apply makes on p: FS when set, else
// ext4 for linux, swap for swap, vfat for esp, and "none" otherwise.
func (p Part) Filesystem() string {
	if p.FS != "" {
		return p.FS
	}
	switch p.Type.Name {
	case "linux", "type83":
		return "ext4"
	case "swap", "type82":
		return "swap"
	case "esp", "typeef":
		return "vfat"
	}
	return "none"
}

// Desc is a parsed partition description: a table kind and partitions
// in disk order (logical partitions right after their extended one).
type Desc struct {
	Table TableKind
	// TableLine is the line of the `table` directive, 0 when absent.
	TableLine int
	Parts     []Part
}

// String formats d as desc text that Parse reads back to the same model.
// A desc without GPT or extensions prints in KA's original syntax.
func (d *Desc) String() string {
	var b strings.Builder
	if d.Table == GPT || d.TableLine != 0 {
		fmt.Fprintf(&b, "table %s\n", d.Table)
	}
	for _, p := range d.Parts {
		if p.Logical {
			b.WriteString("logical ")
		}
		b.WriteString(p.Type.Name)
		b.WriteByte(' ')
		b.WriteString(p.Size.String())
		for _, kv := range [][2]string{{"fs", p.FS}, {"label", p.Label}, {"name", p.Name}, {"mount", p.Mount}, {"uuid", p.UUID}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, " %s=%s", kv[0], quote(kv[1]))
			}
		}
		if p.Boot {
			b.WriteString(" boot")
		}
		b.WriteByte('\n')
	}
	return b.String()
}
