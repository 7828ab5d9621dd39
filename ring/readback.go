package ring

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// WithReadBack returns s with an io.ReaderAt that reads path, the file or
// device s writes (for a Sink that cannot read itself). A node reads its
// own output back only to resend chunks to a node that lacks them after a
// failure. ReadAt opens path read-only on first use; Close closes it and s.
// A Sink that already is an io.ReaderAt is returned unchanged. Use it only
// for raw items: a cooked sink's output is not the stream.
func WithReadBack(s Sink, path string) Sink {
	if _, ok := s.(io.ReaderAt); ok || s == nil {
		return s
	}
	return &readBackSink{Sink: s, path: path}
}

type readBackSink struct {
	Sink
	path string
	mu   sync.Mutex
	f    *os.File
}

func (s *readBackSink) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		f, err := os.Open(s.path)
		if err != nil {
			return 0, fmt.Errorf("read back %s: %w", s.path, err)
		}
		s.f = f
	}
	return s.f.ReadAt(p, off)
}

func (s *readBackSink) Close() error {
	s.mu.Lock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.mu.Unlock()
	return s.Sink.Close()
}
