package filelevel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/herd-cluster/herd/desc"
	"github.com/herd-cluster/herd/ring"
)

// SendOptions configure the golden node's side of a file-level session.
type SendOptions struct {
	// From is where the golden system's filesystems are mounted ("/" on
	// a running golden node, /mnt/golden for a mounted copy). Required.
	From string
	// Excludes are paths of the golden system to leave out (see
	// TarOptions.Excludes).
	Excludes []string
	// KeepUUIDs gives every new filesystem the UUID the golden system's
	// /etc/fstab names for its mount point (and the n-th swap the n-th
	// swap entry's), so fstab and boot configuration stay valid as they
	// are. Parts with uuid= in the desc keep theirs.
	KeepUUIDs bool
	// NoVerify leaves out the digest list of the golden files (the
	// nodes then check only the stream digests, not their unpacked files).
	NoVerify bool
	// Logf receives warnings (files that grew while read, UUIDs not
	// found); nil discards.
	Logf func(format string, args ...any)
}

// Sender is the golden node's side of a file-level session: the header
// item and one tar stream per mounted filesystem of the desc.
type Sender struct {
	Header Header
	o      SendOptions
	ctx    context.Context

	mu    sync.Mutex
	stats map[string]TarStats
	sums  map[string][]FileSum // per mount point, from the first complete stream
}

// NewSender parses the desc text, checks that every filesystem's mount
// point exists under o.From, and prepares the header. Nothing is read
// from the golden tree yet.
func NewSender(ctx context.Context, descText string, o SendOptions) (*Sender, error) {
	d, err := desc.Parse(descText)
	if err != nil {
		return nil, err
	}
	if o.From == "" {
		return nil, fmt.Errorf("filelevel: no golden tree given")
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	mounts := MountOrder(d)
	if len(mounts) == 0 {
		return nil, fmt.Errorf("filelevel: the desc has no filesystem with a mount point (add mount=/ to a partition line)")
	}
	for _, m := range mounts {
		dir := filepath.Join(o.From, m)
		if st, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("golden filesystem for %s: %w", m, err)
		} else if !st.IsDir() {
			return nil, fmt.Errorf("golden filesystem for %s: %s is not a directory", m, dir)
		}
	}
	if o.KeepUUIDs {
		if err := keepUUIDs(d, filepath.Join(o.From, "etc/fstab"), o.Logf); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	s := &Sender{Header: Header{Version: HeaderVersion, Desc: d.String(), Mounts: mounts, Golden: host, Verify: !o.NoVerify},
		o: o, ctx: ctx, stats: map[string]TarStats{}, sums: map[string][]FileSum{}}
	if _, err := s.Header.Encode(); err != nil {
		return nil, err
	}
	return s, nil
}

// keepUUIDs sets uuid= on the parts of d from the golden fstab.
func keepUUIDs(d *desc.Desc, fstab string, logf func(string, ...any)) error {
	b, err := os.ReadFile(fstab)
	if err != nil {
		return fmt.Errorf("keep UUIDs: %w", err)
	}
	ents, err := ParseFstab(b)
	if err != nil {
		return fmt.Errorf("keep UUIDs: %s: %w", fstab, err)
	}
	byMount := map[string]string{}
	var swaps []string
	for _, e := range ents {
		u, ok := strings.CutPrefix(e.Spec, "UUID=")
		if !ok {
			continue
		}
		if e.Type == "swap" {
			swaps = append(swaps, u)
		} else if strings.HasPrefix(e.File, "/") {
			byMount[path.Clean(e.File)] = u
		}
	}
	for i := range d.Parts {
		p := &d.Parts[i]
		if p.UUID != "" {
			continue
		}
		switch fs := p.Filesystem(); {
		case fs == "swap":
			if len(swaps) > 0 {
				p.UUID, swaps = swaps[0], swaps[1:]
			} else {
				logf("keep UUIDs: no UUID= swap entry in %s for partition on line %d", fstab, p.Line)
			}
		case fs != "none" && p.Mount != "":
			if u, ok := byMount[path.Clean("/"+p.Mount)]; ok {
				p.UUID = u
			} else {
				logf("keep UUIDs: no UUID= entry in %s for %s", fstab, p.Mount)
			}
		}
	}
	return nil
}

// Items returns the session's items for ring.Send: the header, then one
// tar stream (size unknown in advance) per filesystem, parents first.
func (s *Sender) Items() []ring.SendItem {
	hb, _ := s.Header.Encode()
	items := []ring.SendItem{{
		Item: ring.Item{Name: HeaderItemName, Dest: headerDest, Size: int64(len(hb))},
		Open: func() (ring.Source, error) {
			return ring.ReaderSource(io.NopCloser(bytes.NewReader(hb))), nil
		},
	}}
	for _, m := range s.Header.Mounts {
		o := TarOptions{Mount: m, Excludes: s.o.Excludes, Logf: s.o.Logf}
		for _, other := range s.Header.Mounts {
			if other != m {
				o.Skip = append(o.Skip, other)
			}
		}
		dir := filepath.Join(s.o.From, m)
		items = append(items, ring.SendItem{
			Item: ring.Item{Name: fsItemPrefix + m, Dest: m, Size: -1},
			Open: func() (ring.Source, error) {
				o := o
				var run []FileSum
				if s.Header.Verify {
					o.Sums = func(fs FileSum) { run = append(run, fs) }
				}
				done := func(err error) {
					if err == nil && s.Header.Verify {
						s.mu.Lock()
						if _, ok := s.sums[m]; !ok {
							s.sums[m] = run
						}
						s.mu.Unlock()
					}
				}
				return &statSource{TarSource: newTarSource(s.ctx, dir, o, done), s: s, m: m}, nil
			},
		})
	}
	if s.Header.Verify {
		items = append(items, ring.SendItem{
			Item: ring.Item{Name: VerifyItemName, Dest: verifyDest, Size: -1},
			Open: func() (ring.Source, error) { return &sumSource{s: s}, nil },
		})
	}
	return items
}

// sumSource yields the digest list. The chain reads items in order, so
// when it reads this one every file stream has ended and recorded its
// digests.
type sumSource struct {
	s   *Sender
	buf []byte
	off int64
	err error
}

func (ss *sumSource) ReadChunk(p []byte) (int64, int, error) {
	if ss.buf == nil && ss.err == nil {
		ss.s.mu.Lock()
		for _, m := range ss.s.Header.Mounts {
			sums, ok := ss.s.sums[m]
			if !ok {
				ss.err = fmt.Errorf("filelevel: digests of %s asked for before its stream ended", m)
				break
			}
			for _, fs := range sums {
				line, _ := fs.MarshalText()
				ss.buf = append(ss.buf, line...)
			}
		}
		ss.s.mu.Unlock()
		if ss.buf == nil {
			ss.buf = []byte{}
		}
	}
	if ss.err != nil {
		return 0, 0, ss.err
	}
	if ss.off >= int64(len(ss.buf)) {
		return ss.off, 0, io.EOF
	}
	n := copy(p, ss.buf[ss.off:])
	off := ss.off
	ss.off += int64(n)
	return off, n, nil
}

func (ss *sumSource) Close() error { return nil }

// Stats returns what was streamed for each mount point (after the
// session).
func (s *Sender) Stats() map[string]TarStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]TarStats, len(s.stats))
	for k, v := range s.stats {
		out[k] = v
	}
	return out
}

// statSource records a tar source's stats when it is closed.
type statSource struct {
	*TarSource
	s *Sender
	m string
}

func (t *statSource) Close() error {
	err := t.TarSource.Close()
	t.s.mu.Lock()
	t.s.stats[t.m] = t.TarSource.Stats()
	t.s.mu.Unlock()
	return err
}
