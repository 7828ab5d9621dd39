// Package wire encodes and decodes the frames of the herd chain protocol.
// It is pure: no sockets, no files, no keys. Every frame is an 8-byte
// header (magic "hd", type, flags, little-endian body length) followed by
// the body. ring/seal protects the bodies; this package only lays them out.
//
// A hop (one TCP connection from a node to the next) goes:
//
//	up → down   Hello      protocol version, session id, the receiver's index, flags, Noise message 1
//	down → up   Challenge  protocol version, Noise message 2 (or a Reject: wrong version, no key...)
//	up → down   Proof      the first frame sealed under the hop's keys: the upstream is live
//	down → up   Ack        acceptance (or Reject with a reason)
//	down → up   Resume     stream frames it already has, and whether it has the manifest
//	up → down   Manifest   (unless it has it) chain, items, the session's data key, the source's MAC
//	up → down   Data…, ItemEnd per item, End    stream frames, forwarded as they came
//	down → up   Ack…       statuses of this node and the nodes after it
//	up → down   Ping       when the upstream has had nothing to send for a while
//	up → down   Bye        everyone after the upstream is done or failed
//	up → down   Detach     (to a node far slower than the rest) moved to the tail, or dropped
//	up → down   Adopt      forwarded to the last node, which then feeds the moved node
//	down → up   NotBack    passed up to the source: a node asked to rejoin did not answer
//
// With a session key every frame after the Challenge is sealed (see
// ring/seal): control frames under the hop's keys, Data frames once by the
// source (their bytes are forwarded as they are) plus a per-hop tag. The
// version in Hello and Challenge lets a node refuse a peer of another build
// with a message naming both versions (VersionError).
//
// Data frames are laid out so a node can forward the bytes it received
// verbatim and read a chunk straight into a buffer after the header:
//
//	[header 8][session 16][item 4][seq 8][offset 8][payload: sealed chunk, see ring/seal]
//
// Payload is what travels (sealed, maybe compressed); the node's plaintext
// is its business (ring/seal opens it).
//
// Public: the frame format, to be read, reviewed and fuzzed on its own.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Type identifies a frame.
type Type uint8

// Frame types.
const (
	THello     Type = 1  // upstream -> downstream, first frame on a hop
	TChallenge Type = 2  // downstream -> upstream, answer to Hello
	TProof     Type = 3  // upstream -> downstream, completes authentication
	TManifest  Type = 4  // session description, forwarded down the chain
	TData      Type = 5  // one chunk of one item
	TItemEnd   Type = 6  // end of one item with its digest
	TEnd       Type = 7  // end of the session's data
	TAck       Type = 8  // downstream -> upstream: statuses of downstream nodes
	TReject    Type = 9  // either way: the peer refuses the hop, with a reason
	TResume    Type = 10 // downstream -> upstream after acceptance: where to (re)start
	TBye       Type = 11 // upstream -> downstream: session over for everyone after you; hang up
	TDetach    Type = 12 // upstream -> a slow node: you are moved to the tail (or dropped); stop forwarding
	TAdopt     Type = 13 // forwarded down the chain: the last node feeds the moved node Index
	TNotBack   Type = 14 // passed up the chain: the rejoin request for node Index found nobody
	TPing      Type = 15 // upstream -> downstream: nothing else to send for a while; the hop is alive
)

func (t Type) String() string {
	switch t {
	case THello:
		return "hello"
	case TChallenge:
		return "challenge"
	case TProof:
		return "proof"
	case TManifest:
		return "manifest"
	case TData:
		return "data"
	case TItemEnd:
		return "item-end"
	case TEnd:
		return "end"
	case TAck:
		return "ack"
	case TReject:
		return "reject"
	case TResume:
		return "resume"
	case TBye:
		return "bye"
	case TDetach:
		return "detach"
	case TAdopt:
		return "adopt"
	case TNotBack:
		return "not-back"
	case TPing:
		return "ping"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ProtocolVersion is the version of the hop protocol this build speaks. A
// node refuses a peer of another version with a message naming both (see
// VersionError). Version 1 was the unsealed protocol of herd before the
// sealed chain; version 2's Hello did not name its sender (Hello.From).
const ProtocolVersion = 3

// Sizes and limits.
const (
	HeaderSize     = 8
	MaxBody        = 64<<20 + 1024 // largest body accepted (chunks up to 64 MiB)
	MaxChunk       = 64 << 20
	dataFixed      = 16 + 4 + 8 + 8 // session, item, seq, off
	DataHeaderSize = HeaderSize + dataFixed
	// helloPrefix and the version digit after it open Hello and
	// Challenge bodies ("HERDRNG2").
	helloPrefix   = "HERDRNG"
	HandshakeSize = 48 // a Noise NNpsk0 message: ephemeral key and tag
	KeySize       = 32 // the session's data key in the manifest
	MACSize       = 32 // the source's MAC on manifest, item ends and end
	DigestSize    = 32
	MaxString     = 4096     // longest name, path or address in a frame
	MaxNodes      = 1 << 16  // longest chain
	FromSource    = MaxNodes // Hello.From of the source
	MaxItems      = 1024     // most items in a session
	// HelloSize and ChallengeSize are the exact body sizes of those
	// frames in this version: a receiver reads nothing more from an
	// unauthenticated peer.
	HelloSize     = len(helloPrefix) + 1 + 16 + 4 + 4 + 1 + HandshakeSize
	ChallengeSize = len(helloPrefix) + 1 + HandshakeSize
)

// VersionError is returned when decoding a Hello or Challenge of another
// protocol version.
type VersionError struct {
	Peer int // the version the peer speaks
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("wire: the peer speaks protocol version %d, this node speaks version %d", e.Peer, ProtocolVersion)
}

// PeekVersion returns the protocol version a Hello or Challenge body
// announces (false when it does not start like one), whatever its size.
func PeekVersion(body []byte) (int, bool) {
	if len(body) < len(helloPrefix)+1 || string(body[:len(helloPrefix)]) != helloPrefix {
		return 0, false
	}
	v := body[len(helloPrefix)]
	if v < '1' || v > '9' {
		return 0, false
	}
	return int(v - '0'), true
}

func appendVersion(b []byte) []byte {
	return append(append(b, helloPrefix...), byte('0'+ProtocolVersion))
}

// readVersion checks the version prefix of a Hello or Challenge body.
func readVersion(r *reader) error {
	p := r.take(len(helloPrefix) + 1)
	if p == nil {
		return ErrBody
	}
	v, ok := PeekVersion(p)
	if !ok {
		return ErrMagic
	}
	if v != ProtocolVersion {
		return &VersionError{Peer: v}
	}
	return nil
}

var magic = [2]byte{'h', 'd'}

// FlagZstd, in the header of a Data frame, says the payload is compressed:
// a little-endian u32 with the chunk's length, then one zstd frame. The
// frame's Sum covers the compressed payload (a relay checks and forwards
// it as it is); item digests cover the chunk's bytes.
const FlagZstd uint8 = 1

// Errors returned by Decode and ReadHeader.
var (
	ErrShort    = errors.New("wire: short frame")
	ErrMagic    = errors.New("wire: bad magic")
	ErrTooLarge = errors.New("wire: frame too large")
	ErrType     = errors.New("wire: unknown frame type")
	ErrBody     = errors.New("wire: malformed body")
)

// Msg is a decoded frame.
type Msg interface {
	Type() Type
	appendBody(b []byte) []byte
	decodeBody(b []byte) error
}

// Header is a frame header.
type Header struct {
	Type  Type
	Flags uint8
	Len   uint32 // body length
}

// ParseHeader decodes the first HeaderSize bytes of b.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return Header{}, ErrMagic
	}
	h := Header{Type: Type(b[2]), Flags: b[3], Len: binary.LittleEndian.Uint32(b[4:])}
	if h.Type < THello || h.Type > TPing {
		return h, fmt.Errorf("%w %d", ErrType, h.Type)
	}
	if h.Flags != 0 && !(h.Type == TData && h.Flags == FlagZstd) {
		return h, fmt.Errorf("%w: reserved flags %#x", ErrBody, h.Flags)
	}
	if h.Len > MaxBody {
		return h, fmt.Errorf("%w: %d bytes", ErrTooLarge, h.Len)
	}
	return h, nil
}

func putHeader(b []byte, t Type, n int) {
	b[0], b[1], b[2], b[3] = magic[0], magic[1], byte(t), 0
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
}

// Append appends the encoding of m to b.
func Append(b []byte, m Msg) []byte {
	start := len(b)
	b = append(b, make([]byte, HeaderSize)...)
	b = m.appendBody(b)
	putHeader(b[start:], m.Type(), len(b)-start-HeaderSize)
	if d, ok := m.(*Data); ok {
		b[start+3] = d.Flags
	}
	return b
}

// Encode returns the encoding of m.
func Encode(m Msg) []byte { return Append(nil, m) }

// Decode decodes one frame from the start of b and returns it with the
// remaining bytes. A Data payload aliases b.
func Decode(b []byte) (Msg, []byte, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, b, err
	}
	if len(b) < HeaderSize+int(h.Len) {
		return nil, b, ErrShort
	}
	body := b[HeaderSize : HeaderSize+int(h.Len)]
	m, err := DecodeBody(h.Type, body)
	if err != nil {
		return nil, b, err
	}
	if d, ok := m.(*Data); ok {
		d.Flags = h.Flags
	}
	return m, b[HeaderSize+int(h.Len):], nil
}

// DecodeBody decodes a body of type t. A Data payload aliases body.
func DecodeBody(t Type, body []byte) (Msg, error) {
	var m Msg
	switch t {
	case THello:
		m = new(Hello)
	case TChallenge:
		m = new(Challenge)
	case TProof:
		m = new(Proof)
	case TManifest:
		m = new(Manifest)
	case TData:
		m = new(Data)
	case TItemEnd:
		m = new(ItemEnd)
	case TEnd:
		m = new(End)
	case TAck:
		m = new(Ack)
	case TReject:
		m = new(Reject)
	case TResume:
		m = new(Resume)
	case TBye:
		m = new(Bye)
	case TDetach:
		m = new(Detach)
	case TAdopt:
		m = new(Adopt)
	case TNotBack:
		m = new(NotBack)
	case TPing:
		m = new(Ping)
	default:
		return nil, fmt.Errorf("%w %d", ErrType, t)
	}
	if err := m.decodeBody(body); err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return m, nil
}

// reader is a bounds-checked little-endian cursor.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = ErrBody
		r.b = nil
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}
func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}
func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}
func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}
func (r *reader) str() string {
	n := int(r.u16())
	if n > MaxString {
		r.err = ErrBody
		return ""
	}
	return string(r.take(n))
}
func (r *reader) fixed(dst []byte) { copy(dst, r.take(len(dst))) }
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBody, len(r.b))
	}
	return nil
}

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func appendStr(b []byte, s string) []byte {
	if len(s) > MaxString {
		s = s[:MaxString]
	}
	b = appendU16(b, uint16(len(s)))
	return append(b, s...)
}

// SessionID identifies a session; chosen at random by the source.
type SessionID [16]byte

// Hello opens a hop. The upstream tells the downstream its index in the
// chain and starts the handshake. Every field is bound into the handshake
// (its prologue), so a change on the way fails it.
type Hello struct {
	Session SessionID
	Index   uint32 // the receiver's index in the chain
	// From is the sender's index in the chain, FromSource for the
	// source: a node taken on at the tail knows who feeds it now, and
	// keeps a node it feeds at the tail only when that one is not
	// among the nodes it feeds (so no ring forms).
	From  uint32
	Keyed bool // the sender has a key; the handshake proves it (else Noise is zero)
	// Tail: the receiver is fed at the end of the chain (a node moved
	// there, or one that rejoins): it forwards to nobody.
	Tail bool
	// Takeover: the sender just dropped or moved the receiver's upstream
	// (Detach) and feeds the receiver itself now; the receiver accepts it
	// even while that upstream still talks (it drains what it had).
	Takeover bool
	Noise    [HandshakeSize]byte // the first handshake message (ring/seal)
}

// Type implements Msg.
func (*Hello) Type() Type { return THello }
func (m *Hello) appendBody(b []byte) []byte {
	b = appendVersion(b)
	b = append(b, m.Session[:]...)
	b = appendU32(b, m.Index)
	b = appendU32(b, m.From)
	k := byte(0)
	if m.Keyed {
		k = 1
	}
	if m.Tail {
		k |= 2
	}
	if m.Takeover {
		k |= 4
	}
	b = append(b, k)
	return append(b, m.Noise[:]...)
}
func (m *Hello) decodeBody(b []byte) error {
	r := reader{b: b}
	if err := readVersion(&r); err != nil {
		return err
	}
	r.fixed(m.Session[:])
	m.Index = r.u32()
	m.From = r.u32()
	if m.From >= MaxNodes && m.From != FromSource {
		return fmt.Errorf("%w: hello from node %d of a chain of at most %d", ErrBody, m.From, MaxNodes)
	}
	k := r.u8()
	if k > 7 {
		return ErrBody
	}
	m.Keyed, m.Tail, m.Takeover = k&1 != 0, k&2 != 0, k&4 != 0
	r.fixed(m.Noise[:])
	return r.done()
}

// Prologue is what the handshake binds of the Hello: every field but the
// handshake message itself.
func (m *Hello) Prologue() []byte {
	h := *m
	h.Noise = [HandshakeSize]byte{}
	return append([]byte("herd hop prologue\x00"), h.appendBody(nil)...)
}

// Ping keeps a hop alive when the upstream has nothing else to send: a
// node that hears nothing from its upstream for long declares it lost.
type Ping struct{}

// Type implements Msg.
func (*Ping) Type() Type                   { return TPing }
func (m *Ping) appendBody(b []byte) []byte { return b }
func (m *Ping) decodeBody(b []byte) error {
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBody, len(b))
	}
	return nil
}

// Bye ends a hop cleanly: the upstream knows every node after it is in a
// final state. A finished node that sees the connection close without a
// Bye stays reachable for a while: its upstream may have died, and the
// node before that may reconnect to it.
type Bye struct{}

// Type implements Msg.
func (*Bye) Type() Type                   { return TBye }
func (m *Bye) appendBody(b []byte) []byte { return b }
func (m *Bye) decodeBody(b []byte) error {
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBody, len(b))
	}
	return nil
}

// Detach tells a node that its upstream moves it out of the chain because
// it is too slow: Drop false, it is moved to the tail (the last node will
// connect to it and feed it at its own pace); Drop true, it is dropped
// from the session (it fails with Reason). Either way it stops forwarding.
type Detach struct {
	Drop   bool
	Reason string
}

// Type implements Msg.
func (*Detach) Type() Type { return TDetach }
func (m *Detach) appendBody(b []byte) []byte {
	d := byte(0)
	if m.Drop {
		d = 1
	}
	return appendStr(append(b, d), m.Reason)
}
func (m *Detach) decodeBody(b []byte) error {
	r := reader{b: b}
	d := r.u8()
	if d > 1 {
		return ErrBody
	}
	m.Drop = d == 1
	m.Reason = r.str()
	return r.done()
}

// Adopt travels down the chain after a slow node was moved: every node
// adds node Index after the nodes it feeds, and the last one connects to
// it and feeds it.
type Adopt struct {
	Index uint32
	// Rejoin: the node had failed (died, unreachable); it counts as failed
	// until it answers, instead of holding up the end of the session.
	Rejoin bool
}

// Type implements Msg.
func (*Adopt) Type() Type { return TAdopt }
func (m *Adopt) appendBody(b []byte) []byte {
	r := byte(0)
	if m.Rejoin {
		r = 1
	}
	return append(appendU32(b, m.Index), r)
}
func (m *Adopt) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Index = r.u32()
	f := r.u8()
	if f > 1 {
		return ErrBody
	}
	m.Rejoin = f == 1
	return r.done()
}

// NotBack answers a rejoin request (Adopt with Rejoin) that found nobody:
// the node that was to feed node Index could not reach it, or it did not
// answer. Every node passes it up to the source; until it (or the node's
// own word) comes back, nobody ends the session, since the node may be
// back.
type NotBack struct {
	Index uint32
}

// Type implements Msg.
func (*NotBack) Type() Type { return TNotBack }
func (m *NotBack) appendBody(b []byte) []byte {
	return appendU32(b, m.Index)
}
func (m *NotBack) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Index = r.u32()
	return r.done()
}

// Challenge answers a Hello: the downstream's version and its handshake
// message (zero without key).
type Challenge struct {
	Noise [HandshakeSize]byte
}

// Type implements Msg.
func (*Challenge) Type() Type { return TChallenge }
func (m *Challenge) appendBody(b []byte) []byte {
	return append(appendVersion(b), m.Noise[:]...)
}
func (m *Challenge) decodeBody(b []byte) error {
	r := reader{b: b}
	if err := readVersion(&r); err != nil {
		return err
	}
	r.fixed(m.Noise[:])
	return r.done()
}

// Resume is the first frame a node sends on an accepted hop: how many
// stream frames (data, item ends, end; the manifest not counted) it has
// already received from the session, and whether it has the manifest. The
// upstream sends the rest from there, from the frames it retained.
type Resume struct {
	Frames      uint64
	HasManifest bool
}

// Type implements Msg.
func (*Resume) Type() Type { return TResume }
func (m *Resume) appendBody(b []byte) []byte {
	b = appendU64(b, m.Frames)
	if m.HasManifest {
		return append(b, 1)
	}
	return append(b, 0)
}
func (m *Resume) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Frames = r.u64()
	f := r.u8()
	if f > 1 {
		return ErrBody
	}
	m.HasManifest = f == 1
	return r.done()
}

// Proof completes the handshake: the first frame the upstream seals under
// the hop's keys, so the downstream knows the upstream is live (a replayed
// Hello cannot produce it). Its body is empty.
type Proof struct{}

// Type implements Msg.
func (*Proof) Type() Type                   { return TProof }
func (m *Proof) appendBody(b []byte) []byte { return b }
func (m *Proof) decodeBody(b []byte) error {
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBody, len(b))
	}
	return nil
}

// ManifestItem is one item of a session.
type ManifestItem struct {
	Name, Dest string
	Cook       bool
	Size       int64 // -1 unknown
}

// Slow-node policies carried by the manifest.
const (
	SlowWait uint8 = iota // a slow node sets the pace of the chain
	SlowMove              // a slow node is moved to the tail
	SlowDrop              // a slow node is dropped (reported failed)
	slowMax
)

// slowNames are the policies' names on the command line, in scenario
// files and in reports: the one mapping between names and codes.
var slowNames = [slowMax]string{SlowWait: "wait", SlowMove: "move", SlowDrop: "drop"}

// SlowName returns the name of a slow-node policy ("" for an unknown code).
func SlowName(p uint8) string {
	if p >= slowMax {
		return ""
	}
	return slowNames[p]
}

// ParseSlow returns the code of a slow-node policy named move, wait or drop.
func ParseSlow(name string) (uint8, bool) {
	for p, n := range slowNames {
		if n == name {
			return uint8(p), true
		}
	}
	return 0, false
}

// Manifest describes a session: the chain, the items, and what to do with
// a node far slower than the rest (Slow, after SlowAfterMs of lag; 0: never).
// With a session key it also carries the key the source seals chunks with
// (random per session) and the source's MAC over all of it (ring/seal).
type Manifest struct {
	Session     SessionID
	ChunkSize   uint32
	Nodes       []string
	Items       []ManifestItem
	Slow        uint8
	SlowAfterMs uint32
	Compress    uint8 // 1: data frames may be compressed (FlagZstd); receivers need room to expand them
	DataKey     [KeySize]byte
	Auth        [MACSize]byte
}

// Type implements Msg.
func (*Manifest) Type() Type { return TManifest }
func (m *Manifest) appendBody(b []byte) []byte {
	b = append(b, m.Session[:]...)
	b = appendU32(b, m.ChunkSize)
	b = appendU32(b, uint32(len(m.Nodes)))
	for _, n := range m.Nodes {
		b = appendStr(b, n)
	}
	b = appendU32(b, uint32(len(m.Items)))
	for _, it := range m.Items {
		b = appendStr(b, it.Name)
		b = appendStr(b, it.Dest)
		c := byte(0)
		if it.Cook {
			c = 1
		}
		b = append(b, c)
		b = appendU64(b, uint64(it.Size))
	}
	b = append(b, m.Slow)
	b = appendU32(b, m.SlowAfterMs)
	b = append(b, m.Compress)
	b = append(b, m.DataKey[:]...)
	return append(b, m.Auth[:]...)
}
func (m *Manifest) decodeBody(b []byte) error {
	r := reader{b: b}
	r.fixed(m.Session[:])
	m.ChunkSize = r.u32()
	n := r.u32()
	if n > MaxNodes || int(n) > len(r.b)/2 {
		return fmt.Errorf("%w: %d nodes", ErrBody, n)
	}
	m.Nodes = make([]string, n)
	for i := range m.Nodes {
		m.Nodes[i] = r.str()
	}
	k := r.u32()
	if k > MaxItems || int(k) > len(r.b)/13 {
		return fmt.Errorf("%w: %d items", ErrBody, k)
	}
	m.Items = make([]ManifestItem, k)
	for i := range m.Items {
		it := &m.Items[i]
		it.Name = r.str()
		it.Dest = r.str()
		c := r.u8()
		if c > 1 {
			return ErrBody
		}
		it.Cook = c == 1
		it.Size = int64(r.u64())
		if it.Size < -1 {
			return fmt.Errorf("%w: item size %d", ErrBody, it.Size)
		}
	}
	m.Slow = r.u8()
	m.SlowAfterMs = r.u32()
	m.Compress = r.u8()
	r.fixed(m.DataKey[:])
	r.fixed(m.Auth[:])
	if m.Compress > 1 {
		return fmt.Errorf("%w: compression %d", ErrBody, m.Compress)
	}
	if m.Slow >= slowMax {
		return fmt.Errorf("%w: slow policy %d", ErrBody, m.Slow)
	}
	if m.ChunkSize == 0 || m.ChunkSize > MaxChunk {
		return fmt.Errorf("%w: chunk size %d", ErrBody, m.ChunkSize)
	}
	return r.done()
}

// Data is one chunk: Payload goes at offset Off of item Item. Seq numbers
// the chunks of the whole session from 0 without gaps. Decoded from the
// wire, Payload is what travelled: the chunk sealed by the source (or, in
// a session without key, the bytes and their checksum); ring/seal opens it
// and the driver hands the core the plaintext in Payload.
type Data struct {
	Session SessionID
	Item    uint32
	Seq     uint64
	Off     int64
	Payload []byte
	Flags   uint8 // header flags (FlagZstd: the chunk is compressed); set by Decode, not DecodeBody
}

// Type implements Msg.
func (*Data) Type() Type { return TData }
func (m *Data) appendBody(b []byte) []byte {
	b = m.appendFixed(b)
	return append(b, m.Payload...)
}
func (m *Data) appendFixed(b []byte) []byte {
	b = append(b, m.Session[:]...)
	b = appendU32(b, m.Item)
	b = appendU64(b, m.Seq)
	return appendU64(b, uint64(m.Off))
}

// AppendFixed appends the fixed fields of d (session, item, seq, offset)
// as they are on the wire: ring/seal binds them to the payload.
func (m *Data) AppendFixed(b []byte) []byte { return m.appendFixed(b) }

func (m *Data) decodeBody(b []byte) error {
	r := reader{b: b}
	r.fixed(m.Session[:])
	m.Item = r.u32()
	m.Seq = r.u64()
	m.Off = int64(r.u64())
	if r.err != nil {
		return r.err
	}
	if m.Off < 0 || m.Off > math.MaxInt64-int64(len(r.b)) {
		return fmt.Errorf("%w: offset %d", ErrBody, m.Off)
	}
	m.Payload = r.b
	return nil
}

// PutDataHeader writes the frame header and the fixed fields of d into
// buf[:DataHeaderSize], for a payload of n bytes that the caller put (or
// will put) at buf[DataHeaderSize:DataHeaderSize+n]. d.Payload is ignored.
func PutDataHeader(buf []byte, d *Data, n int) {
	putHeader(buf, TData, dataFixed+n)
	buf[3] = d.Flags
	d.appendFixed(buf[HeaderSize:HeaderSize])
}

// ItemEnd closes an item: its logical size, the number of payload bytes
// sent, the BLAKE3 digest of the payloads in order, and an xxh3 of the
// run layout (offset, length of every chunk).
type ItemEnd struct {
	Item   uint32
	Size   int64
	Bytes  int64
	Digest [DigestSize]byte
	Layout uint64
	Auth   [MACSize]byte // the source's MAC (ring/seal), zero without key
}

// Type implements Msg.
func (*ItemEnd) Type() Type { return TItemEnd }
func (m *ItemEnd) appendBody(b []byte) []byte {
	b = appendU32(b, m.Item)
	b = appendU64(b, uint64(m.Size))
	b = appendU64(b, uint64(m.Bytes))
	b = append(b, m.Digest[:]...)
	b = appendU64(b, m.Layout)
	return append(b, m.Auth[:]...)
}
func (m *ItemEnd) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Item = r.u32()
	m.Size = int64(r.u64())
	m.Bytes = int64(r.u64())
	r.fixed(m.Digest[:])
	m.Layout = r.u64()
	r.fixed(m.Auth[:])
	return r.done()
}

// End closes the session's data: the number of chunks and payload bytes.
type End struct {
	Chunks uint64
	Bytes  int64
	Auth   [MACSize]byte // the source's MAC (ring/seal), zero without key
}

// Type implements Msg.
func (*End) Type() Type { return TEnd }
func (m *End) appendBody(b []byte) []byte {
	b = appendU64(b, m.Chunks)
	b = appendU64(b, uint64(m.Bytes))
	return append(b, m.Auth[:]...)
}
func (m *End) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Chunks = r.u64()
	m.Bytes = int64(r.u64())
	r.fixed(m.Auth[:])
	return r.done()
}

// Reject refuses a hop (wrong session, bad proof...).
type Reject struct {
	Reason string
}

// Type implements Msg.
func (*Reject) Type() Type                   { return TReject }
func (m *Reject) appendBody(b []byte) []byte { return appendStr(b, m.Reason) }
func (m *Reject) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Reason = r.str()
	return r.done()
}

// Node states on the wire.
const (
	StWaiting uint8 = iota
	StConnected
	StReceiving
	StSyncing
	StDone
	StFailed
	stMax
)

// AckItem is one item's progress in an AckNode.
type AckItem struct {
	Bytes     int64
	Verified  bool
	HasDigest bool
	Digest    [DigestSize]byte
}

// AckNode is one node's status in an Ack. Frames counts the stream frames
// the node received; DownFrames those its own downstream received (equal
// to Frames at the end of the chain): an upstream may drop a retained frame
// once the node after its downstream has it.
type AckNode struct {
	Index      uint32
	State      uint8
	Flags      uint8 // AckBacklog...
	Frames     uint64
	DownFrames uint64
	Bytes      int64
	Rate       float64
	Err        string
	Items      []AckItem
}

// AckNode flags.
const (
	// AckBacklog: at least half of the node's chunk memory waits to be
	// written: its disk is what slows it.
	AckBacklog uint8 = 1
	// AckRejoined: the node came back after it was reported failed (a
	// restarted receiver, fed at the tail); its new status replaces the
	// failure.
	AckRejoined uint8 = 2
	// AckSlowLink: a link into or out of the node was found far slower
	// than the rest of the chain. Set on its own status by a node that
	// concludes its own link is slow (it moved a target for a slow link
	// and the next one looked just as slow): its upstream then moves it
	// (or drops it). Set on a node's status by the node that moved it to
	// the tail for a slow link: the nodes further up then know it is fed
	// at the tail.
	AckSlowLink uint8 = 4
	// AckTail: the node is fed at the tail (moved there, or taken back
	// after it was reported failed), not in its place in the chain's
	// order. A node further up that bypasses a lost target must not dial
	// it there: it would take it from the node that feeds it at the tail
	// and feed it in a place where it forwards to nobody.
	AckTail uint8 = 8
	// AckMoving: the node was moved to the tail and no feeder has been
	// heard of since: set on its status by the node that moved it (or
	// passed the word on). A node that loses the one that moved it (moved
	// or dropped it too, or found it dead) asks for it to be fed in its
	// place: the word may have been lost with it.
	AckMoving uint8 = 16
)

// Ack carries statuses of the sender and of nodes further down the chain.
type Ack struct {
	Nodes []AckNode
}

// Type implements Msg.
func (*Ack) Type() Type { return TAck }
func (m *Ack) appendBody(b []byte) []byte {
	b = appendU32(b, uint32(len(m.Nodes)))
	for _, n := range m.Nodes {
		b = appendU32(b, n.Index)
		b = append(b, n.State, n.Flags)
		b = appendU64(b, n.Frames)
		b = appendU64(b, n.DownFrames)
		b = appendU64(b, uint64(n.Bytes))
		b = appendU64(b, math.Float64bits(n.Rate))
		b = appendStr(b, n.Err)
		b = appendU16(b, uint16(len(n.Items)))
		for _, it := range n.Items {
			b = appendU64(b, uint64(it.Bytes))
			f := byte(0)
			if it.Verified {
				f |= 1
			}
			if it.HasDigest {
				f |= 2
			}
			b = append(b, f)
			if it.HasDigest {
				b = append(b, it.Digest[:]...)
			}
		}
	}
	return b
}
func (m *Ack) decodeBody(b []byte) error {
	r := reader{b: b}
	n := r.u32()
	if n > MaxNodes || int(n) > len(r.b)/42 {
		return fmt.Errorf("%w: %d nodes", ErrBody, n)
	}
	m.Nodes = make([]AckNode, n)
	for i := range m.Nodes {
		an := &m.Nodes[i]
		an.Index = r.u32()
		an.State = r.u8()
		if an.State >= stMax {
			return fmt.Errorf("%w: state %d", ErrBody, an.State)
		}
		an.Flags = r.u8()
		an.Frames = r.u64()
		an.DownFrames = r.u64()
		an.Bytes = int64(r.u64())
		an.Rate = math.Float64frombits(r.u64())
		an.Err = r.str()
		k := r.u16()
		if int(k) > MaxItems || int(k) > len(r.b)/9 {
			return fmt.Errorf("%w: %d items", ErrBody, k)
		}
		if k > 0 {
			an.Items = make([]AckItem, k)
		}
		for j := range an.Items {
			it := &an.Items[j]
			it.Bytes = int64(r.u64())
			f := r.u8()
			if f > 3 {
				return ErrBody
			}
			it.Verified = f&1 != 0
			it.HasDigest = f&2 != 0
			if it.HasDigest {
				r.fixed(it.Digest[:])
			}
		}
		if r.err != nil {
			return r.err
		}
	}
	return r.done()
}
