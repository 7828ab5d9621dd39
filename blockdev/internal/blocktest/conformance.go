package blocktest

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"testing"

	"github.com/herd-cluster/herd/blockdev/fsmap"
)

// SourceCase describes a source under test and the image it must yield.
type SourceCase struct {
	// Open returns a fresh source; it is called once per buffer size.
	Open func(t *testing.T) Source
	// Want is the logical image (the source's bytes at every offset).
	Want []byte
	// Unused lists ranges the source may skip although they hold non-zero
	// bytes (unused filesystem blocks). Outside them, every non-zero byte
	// must be yielded.
	Unused []Extent
	// BufSizes overrides the buffer sizes tried (default 1, 4093, 64 KiB,
	// 1 MiB; sizes over 64 KiB are skipped for images over 8 MiB when 1 is
	// in the list, to keep the suite fast).
	BufSizes []int
}

// Drain reads src to the end with a buffer of bufSize bytes and returns the
// runs it yielded, failing t on any contract violation: n out of range,
// offsets not strictly after the previous run, an error other than io.EOF,
// or a second ReadChunk after io.EOF not returning io.EOF again.
func Drain(t testing.TB, src Source, bufSize int) []Run {
	t.Helper()
	var runs []Run
	buf := make([]byte, bufSize)
	end := int64(-1)
	for i := 0; ; i++ {
		off, n, err := src.ReadChunk(buf)
		if err == io.EOF {
			if n != 0 {
				t.Fatalf("ReadChunk returned io.EOF with n=%d", n)
			}
			break
		}
		if err != nil {
			t.Fatalf("ReadChunk #%d: %v", i, err)
		}
		if n <= 0 || n > len(buf) {
			t.Fatalf("ReadChunk #%d: n=%d with a %d-byte buffer", i, n, len(buf))
		}
		if off < 0 || off < end {
			t.Fatalf("ReadChunk #%d: offset %d not after the previous run's end %d", i, off, end)
		}
		if k := len(runs); k > 0 && runs[k-1].Off+int64(len(runs[k-1].Data)) == off {
			runs[k-1].Data = append(runs[k-1].Data, buf[:n]...)
		} else {
			runs = append(runs, Run{Off: off, Data: append([]byte(nil), buf[:n]...)})
		}
		end = off + int64(n)
	}
	if _, n, err := src.ReadChunk(buf); err != io.EOF || n != 0 {
		t.Fatalf("ReadChunk after the end: n=%d err=%v, want 0, io.EOF", n, err)
	}
	return runs
}

// Run is a contiguous range of yielded bytes.
type Run struct {
	Off  int64
	Data []byte
}

// TestSource runs the source conformance suite.
func TestSource(t *testing.T, c SourceCase) {
	t.Helper()
	sizes := c.BufSizes
	if sizes == nil {
		sizes = []int{1, 4093, 64 << 10, 1 << 20}
		if len(c.Want) > 8<<20 {
			sizes = []int{4093, 1 << 20}
		}
	}
	unused := fsmap.Normalize(c.Unused, int64(len(c.Want)))
	for _, bs := range sizes {
		t.Run(fmt.Sprintf("buf%d", bs), func(t *testing.T) {
			src := c.Open(t)
			runs := Drain(t, src, bs)
			if err := src.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			var covered []Extent
			for _, r := range runs {
				end := r.Off + int64(len(r.Data))
				if end > int64(len(c.Want)) {
					t.Fatalf("run [%d,%d) past the image end %d", r.Off, end, len(c.Want))
				}
				if !bytes.Equal(r.Data, c.Want[r.Off:end]) {
					t.Fatalf("run [%d,%d) differs from the image at %d", r.Off, end, r.Off+int64(firstDiff(r.Data, c.Want[r.Off:end])))
				}
				covered = append(covered, Extent{Off: r.Off, Len: int64(len(r.Data))})
			}
			// Every non-zero byte outside covered and unused is a loss.
			skip := fsmap.Normalize(append(covered, unused...), int64(len(c.Want)))
			pos := int64(0)
			for _, e := range append(skip, Extent{Off: int64(len(c.Want))}) {
				if i := bytes.IndexFunc(c.Want[pos:e.Off], func(r rune) bool { return r != 0 }); i >= 0 {
					t.Fatalf("non-zero byte at %d was never yielded", pos+int64(i))
				}
				pos = max(pos, e.End())
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// SinkCase describes a sink under test.
type SinkCase struct {
	// Open returns a fresh sink for an image of size bytes.
	Open func(t *testing.T, size int64) Sink
	// ReadBack returns the target's content after Close (at least size
	// bytes for targets with a fixed size).
	ReadBack func(t *testing.T) []byte
	// SizeChecked says the sink refuses writes past size.
	SizeChecked bool
	// Encode, when set, marks a streaming sink (a cooking sink): the suite
	// writes Encode(image) as one gap-free stream and ReadBack must return
	// the image itself; a write below the bytes already written must fail.
	Encode func(t *testing.T, img []byte) []byte
}

// TestSink runs the sink conformance suite: runs with holes written in
// increasing order in several chunkings read back exactly, holes as zeros;
// Close without Sync works; WriteAt after Close fails; and, if
// SizeChecked, a write past the size fails.
func TestSink(t *testing.T, c SinkCase) {
	t.Helper()
	const size = 3<<20 + 123
	rng := rand.New(rand.NewSource(7))
	img := make([]byte, size)
	var ext []Extent
	for off := int64(0); off < size; {
		n := int64(rng.Intn(200<<10) + 1)
		if rng.Intn(3) > 0 {
			n = min(n, size-off)
			rng.Read(img[off : off+n])
			ext = append(ext, Extent{Off: off, Len: n})
		}
		off += n + int64(rng.Intn(100<<10))
	}
	wire, wireExt := img, ext
	if c.Encode != nil {
		wire = c.Encode(t, img)
		wireExt = nil
	}
	for _, chunk := range []int{1 << 20, 65536, 4093} {
		t.Run(fmt.Sprintf("chunk%d", chunk), func(t *testing.T) {
			s := c.Open(t, size)
			src := NewMemSource(wire, wireExt)
			buf := make([]byte, chunk)
			for {
				off, n, err := src.ReadChunk(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if m, err := s.WriteAt(buf[:n], off); err != nil || m != n {
					t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, off, m, err)
				}
			}
			if err := s.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			got := c.ReadBack(t)
			if len(got) < size {
				t.Fatalf("read back %d bytes, want %d", len(got), size)
			}
			if i := firstDiff(img, got[:size]); i < size {
				t.Fatalf("content differs at %d", i)
			}
			if _, err := s.WriteAt([]byte{1}, 0); err == nil {
				t.Fatalf("WriteAt after Close succeeded")
			}
		})
	}
	if c.Encode != nil {
		t.Run("backwards", func(t *testing.T) {
			s := c.Open(t, size)
			defer s.Close()
			if _, err := s.WriteAt(wire[:100], 0); err != nil {
				t.Fatal(err)
			}
			if _, err := s.WriteAt(wire[50:60], 50); err == nil {
				t.Fatalf("a streaming sink accepted a write going back")
			}
		})
	}
	t.Run("close-without-sync", func(t *testing.T) {
		s := c.Open(t, size)
		p, off := []byte("abc"), int64(10)
		if c.Encode != nil {
			p, off = wire[:100], 0
		}
		if _, err := s.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close without Sync: %v", err)
		}
	})
	if c.SizeChecked {
		t.Run("past-size", func(t *testing.T) {
			s := c.Open(t, size)
			defer s.Close()
			if _, err := s.WriteAt(make([]byte, 10), size-5); err == nil {
				t.Fatalf("write past the size succeeded")
			}
		})
	}
}
