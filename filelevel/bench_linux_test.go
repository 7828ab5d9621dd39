package filelevel

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWriteTar measures the golden side's stream rate over a tree of
// small and large files (from the page cache), with and without the
// digests the nodes check.
func BenchmarkWriteTar(b *testing.B) {
	dir := b.TempDir()
	var total int64
	for d := range 20 {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 50 {
			size := 4 << 10
			if f == 0 {
				size = 4 << 20
			}
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i*31 + f)
			}
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d", f)), data, 0o644); err != nil {
				b.Fatal(err)
			}
			total += int64(size)
		}
	}
	for _, sums := range []bool{false, true} {
		b.Run(fmt.Sprintf("digests=%v", sums), func(b *testing.B) {
			o := TarOptions{}
			if sums {
				o.Sums = func(FileSum) {}
			}
			b.SetBytes(total)
			for b.Loop() {
				if _, err := WriteTar(context.Background(), io.Discard, dir, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
