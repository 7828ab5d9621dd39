package ring

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/herd-cluster/herd/ring/seal"
	"github.com/herd-cluster/herd/ring/wire"
)

// A hop is one TCP connection from a node to the next, after its handshake:
// the connection, a reader, and the channel that seals what each side sends
// (ring/seal; a plain one without key). Frames written on a hop go through
// one goroutine at a time (the downstream worker, or an upstream's ack
// writer), frames read through one reader goroutine: the channel's counters
// follow the order on the wire.
type hopConn struct {
	conn net.Conn
	br   *bufio.Reader
	ch   *seal.Channel
}

// readControl reads one whole control frame of at most maxControl bytes and
// opens it.
func (h *hopConn) readControl() (wire.Msg, error) {
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(h.br, hb[:]); err != nil {
		return nil, err
	}
	hd, err := wire.ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	if hd.Type == wire.TData {
		return nil, fmt.Errorf("%w: data frame where control frames go", wire.ErrType)
	}
	return h.readBody(hb, hd)
}

// readBody reads and opens the body of a control frame of header hd.
func (h *hopConn) readBody(hb [wire.HeaderSize]byte, hd wire.Header) (wire.Msg, error) {
	if hd.Len > maxControl {
		return nil, fmt.Errorf("%s frame of %d bytes: %w", hd.Type, hd.Len, wire.ErrTooLarge)
	}
	body := make([]byte, hd.Len)
	if _, err := io.ReadFull(h.br, body); err != nil {
		return nil, err
	}
	body, err := h.ch.OpenFrame(hb[:], body)
	if err != nil {
		return nil, err
	}
	return wire.DecodeBody(hd.Type, body)
}

// sealMsg returns the frame of m as it goes on this hop.
func (h *hopConn) sealMsg(m wire.Msg) ([]byte, error) {
	if _, ok := m.(*wire.Data); ok {
		return nil, errors.New("ring: a data frame goes from its buffer (writeData)")
	}
	return h.ch.SealFrame(wire.Encode(m))
}

// writeMsg seals and writes a control frame.
func (h *hopConn) writeMsg(m wire.Msg) error {
	f, err := h.sealMsg(m)
	if err != nil {
		return err
	}
	_, err = h.conn.Write(f)
	return err
}

// writeData writes a Data frame from its buffer (header, fixed fields,
// sealed payload, and on a keyed hop room for the hop tag at the end, which
// is not read: the frame's tag on this hop is written after the rest).
func (h *hopConn) writeData(frame []byte) error {
	n := len(frame) - h.ch.HopTagSize()
	tag, err := h.ch.HopTag(frame[:n])
	if err != nil {
		return err
	}
	if tag == nil {
		_, err = h.conn.Write(frame[:n])
		return err
	}
	bufs := net.Buffers{frame[:n], tag}
	_, err = bufs.WriteTo(h.conn)
	return err
}

// The limits of a peer that has not proved the key yet: it may make the
// receiver hold a Hello's and a Proof's bytes, for handshakeDeadline, on
// at most maxHandshakes connections at once (maxHandshakesPerHost from
// one address). Everything beyond is closed unread.
const (
	maxHandshakes        = 64
	maxHandshakesPerHost = 8
	handshakeDeadline    = 5 * time.Second
	// maxHelloBody is the largest Hello body read, of any version: one of
	// another version is read only to name its version in the refusal.
	maxHelloBody = 256
)

// handshakeLimit counts handshakes in progress, in all and per address.
type handshakeLimit struct {
	mu      sync.Mutex
	total   int
	perHost map[string]int
}

// acquire reserves a handshake slot for conn's peer; false when the limits
// are reached (the connection should be closed at once).
func (l *handshakeLimit) acquire(conn net.Conn) (release func(), ok bool) {
	host := remoteHost(conn)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perHost == nil {
		l.perHost = map[string]int{}
	}
	if l.total >= maxHandshakes || l.perHost[host] >= maxHandshakesPerHost {
		return nil, false
	}
	l.total++
	l.perHost[host]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if l.perHost[host]--; l.perHost[host] <= 0 {
			delete(l.perHost, host)
		}
	}, true
}

func remoteHost(conn net.Conn) string {
	a := conn.RemoteAddr()
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// errBusyHop is a refusal worth retrying.
var errBusyHop = errors.New("node still hears from its upstream")

// errBusySession: the node takes part in another session (it may be
// about to end it, or a peer holds it without sending anything and the
// node forgets it soon): worth retrying while the connect timeout lasts.
var errBusySession = errors.New("this node is busy with another session")

// errStray marks a connection that did not speak the protocol.
var errStray = errors.New("ring: stray connection")

// readHandshakeFrame reads one unsealed handshake frame of type want (or a
// Reject) straight from conn, without buffering past it: the header, then
// a body of at most limit bytes. It is all a peer gets to make us read
// before it proves the key.
func readHandshakeFrame(conn net.Conn, want wire.Type, limit int) (wire.Header, []byte, error) {
	hd, _, body, err := readHandshakeRaw(conn, want, limit)
	return hd, body, err
}

// readHandshakeRaw is readHandshakeFrame that also returns the header as
// received (a sealed frame's associated data).
func readHandshakeRaw(conn net.Conn, want wire.Type, limit int) (wire.Header, [wire.HeaderSize]byte, []byte, error) {
	var hb [wire.HeaderSize]byte
	if _, err := io.ReadFull(conn, hb[:]); err != nil {
		return wire.Header{}, hb, nil, err
	}
	hd, err := wire.ParseHeader(hb[:])
	if err != nil {
		return hd, hb, nil, err
	}
	if hd.Type != want && hd.Type != wire.TReject {
		return hd, hb, nil, fmt.Errorf("%s frame instead of %s", hd.Type, want)
	}
	if int(hd.Len) > limit {
		return hd, hb, nil, fmt.Errorf("%s frame of %d bytes (at most %d): %w", hd.Type, hd.Len, limit, wire.ErrTooLarge)
	}
	body := make([]byte, hd.Len)
	if _, err := io.ReadFull(conn, body); err != nil {
		return hd, hb, nil, err
	}
	return hd, hb, body, nil
}

// versionRefusal is the reason a node gives a peer of another protocol
// version.
func versionRefusal(peer int) string {
	return fmt.Sprintf("protocol version %d refused: this node speaks version %d (run the same herd on every node)", peer, wire.ProtocolVersion)
}

// upHandshake runs the upstream side of a hop's handshake on conn. The
// Hello carries the fields of says (session, index, tail, takeover);
// its key part is filled in here.
func upHandshake(conn net.Conn, key []byte, says wire.Hello, timeout time.Duration) (*hopConn, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	hello := &says
	hello.Keyed = len(key) > 0
	var in *seal.Initiator
	if hello.Keyed {
		var err error
		if in, hello.Noise, err = seal.Initiate(key, hello.Prologue()); err != nil {
			return nil, err
		}
	}
	if _, err := conn.Write(wire.Encode(hello)); err != nil {
		return nil, err
	}
	hd, body, err := readHandshakeFrame(conn, wire.TChallenge, wire.MaxString+2)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("connection closed before the challenge (a node of an older herd, before protocol version %d, closes like this): %w", wire.ProtocolVersion, err)
		}
		return nil, err
	}
	if hd.Type == wire.TReject {
		m, err := wire.DecodeBody(hd.Type, body)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("rejected: %s", m.(*wire.Reject).Reason)
	}
	m, err := wire.DecodeBody(hd.Type, body)
	if err != nil {
		var ve *wire.VersionError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the node speaks protocol version %d, this herd speaks version %d (run the same herd on every node)", ve.Peer, wire.ProtocolVersion)
		}
		return nil, err
	}
	ch := seal.Plain()
	if hello.Keyed {
		if ch, err = in.Finish(m.(*wire.Challenge).Noise); err != nil {
			return nil, fmt.Errorf("authentication failed: %w", err)
		}
	}
	h := &hopConn{conn: conn, ch: ch}
	if err := h.writeMsg(&wire.Proof{}); err != nil {
		return nil, err
	}
	// From here on the peer is authenticated: its frames may be large.
	h.br = bufio.NewReaderSize(conn, 64<<10)
	m, err = h.readControl()
	if err != nil {
		return nil, err
	}
	switch m := m.(type) {
	case *wire.Ack:
		return h, nil
	case *wire.Reject:
		switch m.Reason {
		case errUpstreamAlive:
			return nil, fmt.Errorf("rejected: %w", errBusyHop)
		case errBusySession.Error():
			return nil, fmt.Errorf("rejected: %w", errBusySession)
		}
		return nil, fmt.Errorf("rejected: %s", m.Reason)
	default:
		return nil, fmt.Errorf("unexpected %s frame instead of acceptance", m.Type())
	}
}

// downHandshake runs the receiving side of a hop's handshake. accept
// decides, once the peer is authenticated, whether this session is welcome
// (an empty reason accepts). Until the peer has proved the key it reads
// only a Hello and a Proof of their exact sizes, within timeout.
func downHandshake(conn net.Conn, key []byte, timeout time.Duration, accept func(*wire.Hello) string) (*wire.Hello, *hopConn, error) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	defer conn.SetDeadline(time.Time{})
	reject := func(reason string) error {
		_, _ = conn.Write(wire.Encode(&wire.Reject{Reason: reason}))
		return errors.New(reason)
	}
	hd, body, err := readHandshakeFrame(conn, wire.THello, maxHelloBody)
	if err != nil || hd.Type != wire.THello {
		if err == nil {
			err = fmt.Errorf("%s frame before hello", hd.Type)
		}
		return nil, nil, fmt.Errorf("%w: %v", errStray, err)
	}
	if v, ok := wire.PeekVersion(body); ok && v != wire.ProtocolVersion {
		return nil, nil, reject(versionRefusal(v))
	}
	if len(body) != wire.HelloSize {
		return nil, nil, fmt.Errorf("%w: hello of %d bytes (want %d)", errStray, len(body), wire.HelloSize)
	}
	m, err := wire.DecodeBody(wire.THello, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errStray, err)
	}
	hello := m.(*wire.Hello)
	keyed := len(key) > 0
	switch {
	case keyed && !hello.Keyed:
		return nil, nil, reject("this node requires a session key (the sender has none)")
	case !keyed && hello.Keyed:
		return nil, nil, reject("this node runs without a key (--insecure) and cannot prove one; give it the session's --key-file")
	}
	ch := seal.Plain()
	ans := &wire.Challenge{}
	if keyed {
		if ans.Noise, ch, err = seal.Respond(key, hello.Prologue(), hello.Noise); err != nil {
			if errors.Is(err, seal.ErrAuth) {
				return nil, nil, reject("authentication failed: wrong key proof")
			}
			return nil, nil, err
		}
	}
	if _, err := conn.Write(wire.Encode(ans)); err != nil {
		return nil, nil, err
	}
	// The Proof: the first sealed frame, of an exact size.
	hd, hb, body, err := readHandshakeRaw(conn, wire.TProof, ch.Overhead())
	if err != nil {
		return nil, nil, fmt.Errorf("waiting for proof: %w", err)
	}
	if hd.Type != wire.TProof || int(hd.Len) != ch.Overhead() {
		return nil, nil, fmt.Errorf("%s frame of %d bytes instead of proof", hd.Type, hd.Len)
	}
	if body, err = ch.OpenFrame(hb[:], body); err != nil {
		return nil, nil, fmt.Errorf("proof: %w", err)
	}
	if _, err := wire.DecodeBody(wire.TProof, body); err != nil {
		return nil, nil, fmt.Errorf("proof: %w", err)
	}
	h := &hopConn{conn: conn, ch: ch}
	if reason := accept(hello); reason != "" {
		_ = h.writeMsg(&wire.Reject{Reason: reason})
		return nil, nil, errors.New(reason)
	}
	ack := &wire.Ack{Nodes: []wire.AckNode{{Index: hello.Index, State: wire.StConnected}}}
	if err := h.writeMsg(ack); err != nil {
		return nil, nil, err
	}
	h.br = bufio.NewReaderSize(conn, 64<<10)
	return hello, h, nil
}

// hopDial is how to reach a node (dialHop): where, with what, and for how
// long.
type hopDial struct {
	dial  func(context.Context, string, string) (net.Conn, error)
	addr  string
	key   []byte
	hello wire.Hello
	// timeout: connect attempts go on until then (0: one attempt).
	timeout time.Duration
	// busyFor: a node that refuses because it still hears from its
	// upstream is asked again until then.
	busyFor time.Duration
	// handshake bounds each step of the handshake; connect one connect
	// (0: as handshake).
	handshake time.Duration
	connect   time.Duration
}

// dialHop connects to the node at d.addr, retrying until d.timeout, and
// runs the upstream side of the handshake. A node that refuses because it
// still hears from its upstream is asked again until d.busyFor has
// passed. On success the node has accepted us.
func dialHop(ctx context.Context, d hopDial) (*hopConn, error) {
	start := time.Now()
	deadline := start.Add(d.timeout)
	connect := d.connect
	if connect <= 0 {
		connect = d.handshake
	}
	for {
		conn, err := dialOnce(ctx, d.dial, d.addr, deadline, connect)
		if err != nil {
			return nil, err
		}
		h, err := upHandshake(conn, d.key, d.hello, d.handshake)
		if err == nil {
			return h, nil
		}
		conn.Close()
		retry := (errors.Is(err, errBusyHop) && time.Since(start) <= d.busyFor) ||
			(errors.Is(err, errBusySession) && time.Now().Before(deadline))
		if !retry {
			return nil, fmt.Errorf("handshake with %s: %w", d.addr, err)
		}
		// The node still hears from its current upstream: it may be us
		// who are cut off, or it is about to notice. Ask again.
		select {
		case <-time.After(dialRetry):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dialOnce connects, retrying failed connections until deadline; each
// attempt waits connTimeout at most.
func dialOnce(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string, deadline time.Time, connTimeout time.Duration) (net.Conn, error) {
	for {
		dctx, cancel := context.WithTimeout(ctx, connTimeout)
		c, err := dial(dctx, "tcp", addr)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, &dialError{addr: addr, err: err}
		}
		select {
		case <-time.After(dialRetry):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dialError is a failed connection to addr. Its text names the address
// and the cause once ("connect 10.0.0.1:9998: connection refused"), where
// the net package's error would repeat both; Unwrap gives that error, so
// errors.Is and errors.As still see everything it holds.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string {
	cause := e.err
	var op *net.OpError
	if errors.As(cause, &op) && op.Err != nil {
		cause = op.Err
		var sys *os.SyscallError
		if errors.As(cause, &sys) && sys.Err != nil {
			cause = sys.Err
		}
	}
	return fmt.Sprintf("connect %s: %v", e.addr, cause)
}

func (e *dialError) Unwrap() error { return e.err }

// isAuthFailure reports whether err says a peer failed authentication.
func isAuthFailure(err error) bool {
	return errors.Is(err, seal.ErrAuth) || (err != nil && strings.Contains(err.Error(), "authentication failed"))
}
