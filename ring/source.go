package ring

import "io"

// ReaderSource adapts a sequential io.Reader (offsets 0,1,2... no holes).
// Close closes r.
func ReaderSource(r io.ReadCloser) Source { return &readerSource{r: r} }

type readerSource struct {
	r   io.ReadCloser
	off int64
}

func (s *readerSource) ReadChunk(p []byte) (int64, int, error) {
	n, err := io.ReadFull(s.r, p)
	off := s.off
	s.off += int64(n)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n > 0) {
		err = nil
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return off, n, err
}

func (s *readerSource) Close() error { return s.r.Close() }
