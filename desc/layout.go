package desc

import (
	"crypto/rand"
	"fmt"
	"io"
	"strings"
)

// Plan is a desc laid out on one disk: exact sectors for every
// partition. Layout makes one from a Desc, ReadTable from a disk.
type Plan struct {
	Table       TableKind     `json:"table"`
	SectorSize  int64         `json:"sector_size"`  // bytes per logical sector (512 or 4096)
	DiskSectors int64         `json:"disk_sectors"` // size of the whole disk in sectors
	DiskGUID    GUID          `json:"disk_guid"`    // GPT disk GUID
	DiskID      uint32        `json:"disk_id"`      // MBR disk signature
	Parts       []PlannedPart `json:"partitions"`   // in disk order; logicals right after their extended
}

// PlannedPart is one partition of a Plan. Start and Sectors count
// logical sectors from the start of the disk.
type PlannedPart struct {
	Index   int    `json:"index"` // Linux partition number: 1-4 primaries, 5+ logicals (MBR); 1-128 (GPT)
	Start   int64  `json:"start"`
	Sectors int64  `json:"sectors"`
	Logical bool   `json:"logical,omitempty"`
	Type    Type   `json:"type"`
	GUID    GUID   `json:"guid"`           // GPT unique partition GUID
	Name    string `json:"name,omitempty"` // GPT partition name
	Boot    bool   `json:"boot,omitempty"`
	Attrs   uint64 `json:"attrs,omitempty"` // GPT attribute bits (bit 2 mirrors Boot)
	FS      string `json:"fs,omitempty"`    // filesystem to make ("" or "none": none)
	Label   string `json:"label,omitempty"`
	Mount   string `json:"mount,omitempty"`
	UUID    string `json:"uuid,omitempty"`
	Line    int    `json:"line,omitempty"` // desc line it comes from, 0 when decoded
}

// End returns the first sector after p.
func (p PlannedPart) End() int64 { return p.Start + p.Sectors }

// Offset returns p's start in bytes for sector size ss.
func (p PlannedPart) Offset(ss int64) int64 { return p.Start * ss }

// Bytes returns p's size in bytes for sector size ss.
func (p PlannedPart) Bytes(ss int64) int64 { return p.Sectors * ss }

// LayoutOption changes how Layout works.
type LayoutOption func(*layoutOpts)

type layoutOpts struct{ rand io.Reader }

// WithRand makes Layout draw disk and partition GUIDs and the MBR disk
// id from r instead of crypto/rand (for reproducible tests).
func WithRand(r io.Reader) LayoutOption { return func(o *layoutOpts) { o.rand = r } }

// alignBytes is the partition alignment: 1 MiB, like fdisk and parted.
const alignBytes = MiB

// gptEntrySectors returns the sectors the 128-entry GPT array takes.
func gptEntrySectors(ss int64) int64 { return (maxGPTParts*128 + ss - 1) / ss }

// usableRange returns the first and end (exclusive) sectors that
// partitions may use, both aligned to 1 MiB.
func usableRange(kind TableKind, ss, total int64) (first, end int64) {
	align := alignBytes / ss
	first = align
	end = total
	if kind == GPT {
		end = total - 1 - gptEntrySectors(ss)
	} else if end > 1<<32 {
		end = 1 << 32 // MBR counts sectors in 32 bits
	}
	end = end / align * align
	return first, end
}

// Layout places d's partitions on a disk of diskBytes bytes with
// sectorSize-byte sectors: every partition starts and ends on a 1 MiB
// boundary, fixed sizes round up to 1 MiB, percentages are of the usable
// area, `fill` takes the rest of its container, and each logical
// partition is preceded by 1 MiB holding its EBR. A disk too small for
// the fixed parts is refused with a *ParseError wrapping ErrTooSmall that
// names the first line that does not fit.
func (d *Desc) Layout(diskBytes, sectorSize int64, opts ...LayoutOption) (*Plan, error) {
	o := layoutOpts{rand: rand.Reader}
	for _, f := range opts {
		f(&o)
	}
	if sectorSize != 512 && sectorSize != 1024 && sectorSize != 2048 && sectorSize != 4096 {
		return nil, fmt.Errorf("desc: sector size %d: want 512, 1024, 2048 or 4096", sectorSize)
	}
	ss := sectorSize
	align := alignBytes / ss
	total := diskBytes / ss
	first, end := usableRange(d.Table, ss, total)
	if end <= first {
		return nil, &ParseError{Err: ErrTooSmall, Msg: fmt.Sprintf("disk of %s holds no aligned partition", human(diskBytes))}
	}
	usable := end - first
	plan := &Plan{Table: d.Table, SectorSize: ss, DiskSectors: total}
	var err error
	if plan.DiskGUID, err = newGUID(o.rand); err != nil {
		return nil, err
	}
	var id [4]byte
	if _, err := io.ReadFull(o.rand, id[:]); err != nil {
		return nil, fmt.Errorf("desc: random disk id: %w", err)
	}
	plan.DiskID = uint32(id[0]) | uint32(id[1])<<8 | uint32(id[2])<<16 | uint32(id[3])<<24

	sizeOf := func(p Part, cursor, limit int64, what string) (int64, error) {
		var n int64
		switch p.Size.Kind {
		case SizeFixed:
			n = alignUp((p.Size.Bytes+ss-1)/ss, align)
		case SizePercent:
			n = usable * int64(p.Size.Percent) / 100 / align * align
			if n == 0 {
				n = align
			}
		case SizeFill:
			n = limit - cursor
			if n < align {
				return 0, &ParseError{Line: p.Line, Col: wordColRaw(p, 1), Err: ErrTooSmall,
					Msg: fmt.Sprintf("no room left for `fill` on a %s disk (%s used before it in %s)", human(diskBytes), human((cursor-first)*ss), what)}
			}
			return n, nil
		}
		if cursor+n > limit {
			return 0, &ParseError{Line: p.Line, Col: wordColRaw(p, 1), Err: ErrTooSmall,
				Msg: fmt.Sprintf("partition does not fit: needs %s, %s left in %s of a %s disk", human(n*ss), human(max(limit-cursor, 0)*ss), what, human(diskBytes))}
		}
		return n, nil
	}

	cursor := first
	index := 0
	logicalIndex := 4
	extEnd := int64(-1) // end of the extended partition, -1 before it
	lcursor := int64(0)
	for _, p := range d.Parts {
		pp := PlannedPart{Logical: p.Logical, Type: p.Type, Name: p.Name, Boot: p.Boot,
			FS: p.Filesystem(), Label: p.Label, Mount: p.Mount, UUID: p.UUID, Line: p.Line}
		if p.Type.IsExtended() {
			pp.FS = "none"
		}
		if d.Table == GPT {
			if pp.GUID, err = newGUID(o.rand); err != nil {
				return nil, err
			}
			if p.Boot {
				pp.Attrs |= 1 << 2
			}
			if pp.Name == "" {
				pp.Name = p.Label
			}
		}
		if p.Logical {
			if extEnd < 0 {
				return nil, perr(p.Line, 1, "logical partition without an extended partition before it")
			}
			ebr := lcursor
			n, err := sizeOf(p, ebr+align, extEnd, "the extended partition")
			if err != nil {
				return nil, err
			}
			logicalIndex++
			pp.Index = logicalIndex
			pp.Start, pp.Sectors = ebr+align, n
			lcursor = pp.End()
			plan.Parts = append(plan.Parts, pp)
			continue
		}
		n, err := sizeOf(p, cursor, end, "the disk")
		if err != nil {
			return nil, err
		}
		index++
		pp.Index = index
		pp.Start, pp.Sectors = cursor, n
		cursor += n
		plan.Parts = append(plan.Parts, pp)
		if p.Type.IsExtended() {
			extEnd = pp.End()
			lcursor = pp.Start
		}
	}
	return plan, nil
}

// String prints the plan as a table: one line per partition with its
// number, sectors, size, type and filesystem.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s, disk %s (%d sectors of %d bytes)\n", p.Table, human(p.DiskSectors*p.SectorSize), p.DiskSectors, p.SectorSize)
	fmt.Fprintf(&b, "%-4s %12s %12s %12s %11s  %-8s %-5s %s\n", "#", "start", "end", "sectors", "size", "type", "fs", "label/mount")
	for _, pp := range p.Parts {
		name := pp.Type.Name
		if pp.Logical {
			name = "  " + name
		}
		extra := strings.TrimSpace(strings.Join([]string{pp.Label, pp.Mount}, " "))
		if pp.Boot {
			extra = strings.TrimSpace(extra + " boot")
		}
		fs := pp.FS
		if fs == "" {
			fs = "none"
		}
		line := fmt.Sprintf("%-4d %12d %12d %12d %11s  %-8s %-5s %s", pp.Index, pp.Start, pp.End()-1, pp.Sectors, human(pp.Sectors*p.SectorSize), name, fs, extra)
		b.WriteString(strings.TrimRight(line, " "))
		b.WriteByte('\n')
	}
	return b.String()
}
