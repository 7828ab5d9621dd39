// Package tftp serves the first boot stage (pxelinux or iPXE) read-only
// over TFTP from one folder. Names are resolved inside the folder with
// os.Root, so "../" and symbolic links that leave it are refused. A
// Dynamic hook can answer some names with generated content (for
// example per-machine pxelinux.cfg files) before the folder is tried.
//
// The server runs pin/tftp in single-port mode: every transfer uses the
// listening socket, which therefore keeps working when the socket was
// opened inside a network namespace by another OS thread.
//
// Usage:
//
//	srv := &tftp.Server{Dir: "/srv/herd/boot"}
//	go srv.ListenAndServe(":69")
//	defer srv.Shutdown()
//
// Public but small: only the PXE server uses it.
package tftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	ptftp "github.com/pin/tftp/v3"
)

// ErrOutside is returned for a name that would leave the boot folder.
var ErrOutside = errors.New("tftp: path outside the boot folder")

// Server is a read-only TFTP server. Set its fields before Serve; they
// must not change afterwards.
type Server struct {
	// Dir is the boot folder; nothing outside it can be read.
	Dir string
	// Dynamic, when set, is asked first with the cleaned name and the
	// client address; ok=true answers with data instead of a file.
	Dynamic func(name string, client net.IP) (data []byte, ok bool)
	// Logf receives one line per transfer and per refusal (optional).
	Logf func(format string, args ...any)
	// Count, if set, is called once per read request: service "tftp",
	// outcome "ok" (sent in full) or "error" (refused or failed).
	Count func(service, outcome string)
	// Timeout per packet (default 2 s).
	Timeout time.Duration

	mu     sync.Mutex
	srv    *ptftp.Server
	root   *os.Root
	closed bool
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// CleanName turns a requested name into a path relative to the boot
// folder, or fails with ErrOutside. Leading slashes are dropped (many
// firmwares send "/pxelinux.0"); backslashes count as separators.
func CleanName(name string) (string, error) {
	n := strings.ReplaceAll(name, "\\", "/")
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%w: %q", ErrOutside, name)
	}
	n = strings.TrimLeft(n, "/")
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q", ErrOutside, name)
		}
	}
	n = path.Clean(n)
	if n == "." || n == "" {
		return "", fmt.Errorf("%w: %q is not a file", ErrOutside, name)
	}
	return n, nil
}

// Serve answers requests on conn until Shutdown. conn is typically a UDP
// socket on port 69.
func (s *Server) Serve(conn net.PacketConn) error {
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		return fmt.Errorf("tftp: open boot folder %s: %w", s.Dir, err)
	}
	srv := ptftp.NewServer(s.read, nil)
	srv.EnableSinglePort()
	t := s.Timeout
	if t <= 0 {
		t = 2 * time.Second
	}
	srv.SetTimeout(t)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		root.Close()
		return nil
	}
	s.srv, s.root = srv, root
	s.mu.Unlock()
	defer root.Close()
	return srv.Serve(conn)
}

// ListenAndServe listens on the UDP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("tftp: listen %s: %w", addr, err)
	}
	defer conn.Close()
	return s.Serve(conn)
}

// Shutdown stops Serve (also one not started yet). Transfers in flight
// are abandoned.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.closed = true
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

func (s *Server) read(name string, rf io.ReaderFrom) (err error) {
	if s.Count != nil {
		defer func() {
			outcome := "ok"
			if err != nil {
				outcome = "error"
			}
			s.Count("tftp", outcome)
		}()
	}
	var client net.IP
	if ot, ok := rf.(ptftp.OutgoingTransfer); ok {
		addr := ot.RemoteAddr()
		client = addr.IP
	}
	clean, err := CleanName(name)
	if err != nil {
		s.logf("tftp: %v refused %q: %v", client, name, err)
		return err
	}
	if s.Dynamic != nil {
		if data, ok := s.Dynamic(clean, client); ok {
			if ot, ok := rf.(ptftp.OutgoingTransfer); ok {
				ot.SetSize(int64(len(data)))
			}
			n, err := rf.ReadFrom(bytes.NewReader(data))
			s.logf("tftp: %v got %s (generated, %d bytes)", client, clean, n)
			return err
		}
	}
	s.mu.Lock()
	root := s.root
	s.mu.Unlock()
	f, err := root.Open(clean)
	if err != nil {
		s.logf("tftp: %v refused %q: %v", client, name, err)
		return fmt.Errorf("tftp: open %s: %w", clean, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tftp: stat %s: %w", clean, err)
	}
	if !fi.Mode().IsRegular() {
		s.logf("tftp: %v refused %q: not a regular file", client, name)
		return fmt.Errorf("tftp: %s is not a regular file", clean)
	}
	if ot, ok := rf.(ptftp.OutgoingTransfer); ok {
		ot.SetSize(fi.Size())
	}
	n, err := rf.ReadFrom(f)
	if err != nil {
		s.logf("tftp: %v failed %s after %d bytes: %v", client, clean, n, err)
		return err
	}
	s.logf("tftp: %v got %s (%d bytes)", client, clean, n)
	return nil
}
