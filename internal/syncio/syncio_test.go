package syncio

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// Concurrent writers never interleave within one Write, and a Buffer
// read while written returns whole writes (run with -race).
func TestConcurrentWrites(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	var b Buffer
	line := strings.Repeat("x", 100) + "\n"
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				w.Write([]byte(line))
				b.Write([]byte(line))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	for _, got := range []string{out.String(), b.String(), string(b.Bytes())} {
		if got != strings.Repeat(line, 800) {
			t.Fatalf("got %d bytes, not 800 whole lines", len(got))
		}
	}
}
