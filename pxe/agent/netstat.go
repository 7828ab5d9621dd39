package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// tcpEstablished is the state code of an established connection in
// /proc/net/tcp.
const tcpEstablished = "01"

// SessionActive reports whether an established TCP connection has the
// local port port, from /proc/net/tcp and /proc/net/tcp6 (false where
// they cannot be read).
func SessionActive(port int) bool {
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		found, _ := EstablishedOnPort(f, port)
		f.Close()
		if found {
			return true
		}
	}
	return false
}

// EstablishedOnPort reads a /proc/net/tcp or tcp6 table and reports
// whether it lists an established connection whose local port is port.
// A malformed line is an error naming its line number.
func EstablishedOnPort(r io.Reader, port int) (bool, error) {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if line == 1 && len(f) > 0 && f[0] == "sl" {
			continue // header
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			return false, fmt.Errorf("agent: tcp table line %d: %d fields, want at least 4", line, len(f))
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			return false, fmt.Errorf("agent: tcp table line %d: local address %q has no port", line, f[1])
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return false, fmt.Errorf("agent: tcp table line %d: port %q: %v", line, hexPort, err)
		}
		if int(p) == port && f[3] == tcpEstablished {
			return true, nil
		}
	}
	return false, sc.Err()
}
