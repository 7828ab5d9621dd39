// Package wire encodes and decodes the frames of the herd chain protocol.
// It is pure: no sockets, no files. Every frame is an 8-byte header (magic
// "hd", type, flags (zero), little-endian body length) followed by the body.
//
// A hop (one TCP connection from a node to the next) goes:
//
//	up → down   Hello      session id, the receiver's index, a nonce
//	down → up   Challenge  its nonce, keyed-BLAKE3 MAC of both nonces (role "down")
//	up → down   Proof      MAC of both nonces (role "up"); the key never travels
//	down → up   Ack        acceptance (or Reject with a reason)
//	down → up   Resume     stream frames it already has, and whether it has the manifest
//	up → down   Manifest   (unless it has it) chain and items
//	up → down   Data…, ItemEnd per item, End    stream frames, forwarded verbatim
//	down → up   Ack…       statuses of this node and the nodes after it
//	up → down   Bye        everyone after the upstream is done or failed
//	up → down   Detach     (to a node far slower than the rest) moved to the tail, or dropped
//	up → down   Adopt      forwarded to the last node, which then feeds the moved node
//	down → up   NotBack    passed up to the source: a node asked to rejoin did not answer
//
// Data frames carry the session id, the item index, a global chunk number
// and the offset, with an xxh3-128 sum (keyed BLAKE3 with a session key) over
// all of it. ItemEnd carries the BLAKE3 digest of the item's data and an
// xxh3 of its run layout; every node compares them with what it wrote.
//
// Data frames are laid out so a node can forward the bytes it received
// verbatim and read a chunk straight into a buffer after the header:
//
//	buf := make([]byte, wire.DataHeaderSize+n)
//	// fill buf[wire.DataHeaderSize:] with the payload, then:
//	d := wire.Data{Session: s, Item: 0, Seq: 7, Off: off}
//	d.Sum = wire.NewSummer(key, s).Sum(&d, buf[wire.DataHeaderSize:])
//	wire.PutDataHeader(buf, &d, n)
//	msg, rest, err := wire.Decode(buf) // msg.(*wire.Data).Payload aliases buf
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
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Sizes and limits.
const (
	HeaderSize     = 8
	MaxBody        = 64<<20 + 1024 // largest body accepted (chunks up to 64 MiB)
	MaxChunk       = 64 << 20
	dataFixed      = 16 + 4 + 8 + 8 + 16 // session, item, seq, off, sum
	DataHeaderSize = HeaderSize + dataFixed
	HelloMagic     = "HERDRNG1"
	SumSize        = 16
	NonceSize      = 32
	MACSize        = 32
	DigestSize     = 32
	MaxString      = 4096    // longest name, path or address in a frame
	MaxNodes       = 1 << 16 // longest chain
	MaxItems       = 1024    // most items in a session
)

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
	if h.Type < THello || h.Type > TNotBack {
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
// chain and offers a nonce for authentication.
type Hello struct {
	Session SessionID
	Index   uint32 // the receiver's index in the chain
	Keyed   bool   // the sender has a key and expects a MAC in the challenge
	// Tail: the receiver is fed at the end of the chain (a node moved
	// there, or one that rejoins): it forwards to nobody.
	Tail bool
	// Takeover: the sender just dropped or moved the receiver's upstream
	// (Detach) and feeds the receiver itself now; the receiver accepts it
	// even while that upstream still talks (it drains what it had).
	Takeover bool
	Nonce    [NonceSize]byte
}

// Type implements Msg.
func (*Hello) Type() Type { return THello }
func (m *Hello) appendBody(b []byte) []byte {
	b = append(b, HelloMagic...)
	b = append(b, m.Session[:]...)
	b = appendU32(b, m.Index)
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
	return append(b, m.Nonce[:]...)
}
func (m *Hello) decodeBody(b []byte) error {
	r := reader{b: b}
	if string(r.take(len(HelloMagic))) != HelloMagic {
		return ErrMagic
	}
	r.fixed(m.Session[:])
	m.Index = r.u32()
	k := r.u8()
	if k > 7 {
		return ErrBody
	}
	m.Keyed, m.Tail, m.Takeover = k&1 != 0, k&2 != 0, k&4 != 0
	r.fixed(m.Nonce[:])
	return r.done()
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

// Challenge answers a Hello: the downstream's nonce and its MAC proving
// the key (zero without key).
type Challenge struct {
	Nonce [NonceSize]byte
	MAC   [MACSize]byte
}

// Type implements Msg.
func (*Challenge) Type() Type { return TChallenge }
func (m *Challenge) appendBody(b []byte) []byte {
	b = append(b, m.Nonce[:]...)
	return append(b, m.MAC[:]...)
}
func (m *Challenge) decodeBody(b []byte) error {
	r := reader{b: b}
	r.fixed(m.Nonce[:])
	r.fixed(m.MAC[:])
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

// Proof completes the handshake: the upstream's MAC over both nonces.
type Proof struct {
	MAC [MACSize]byte
}

// Type implements Msg.
func (*Proof) Type() Type                   { return TProof }
func (m *Proof) appendBody(b []byte) []byte { return append(b, m.MAC[:]...) }
func (m *Proof) decodeBody(b []byte) error {
	r := reader{b: b}
	r.fixed(m.MAC[:])
	return r.done()
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

// Manifest describes a session: the chain, the items, and what to do with
// a node far slower than the rest (Slow, after SlowAfterMs of lag; 0: never).
type Manifest struct {
	Session     SessionID
	ChunkSize   uint32
	Nodes       []string
	Items       []ManifestItem
	Slow        uint8
	SlowAfterMs uint32
	Compress    uint8 // 1: data frames may be compressed (FlagZstd); receivers need room to expand them
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
	return append(b, m.Compress)
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
// the chunks of the whole session from 0 without gaps. Sum is the xxh3 (or,
// with a key, keyed BLAKE3) of the fields and the payload; see Summer.
type Data struct {
	Session SessionID
	Item    uint32
	Seq     uint64
	Off     int64
	Sum     [SumSize]byte
	Payload []byte
	Flags   uint8 // header flags (FlagZstd: Payload is compressed); set by Decode, not DecodeBody
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
	b = appendU64(b, uint64(m.Off))
	return append(b, m.Sum[:]...)
}
func (m *Data) decodeBody(b []byte) error {
	r := reader{b: b}
	r.fixed(m.Session[:])
	m.Item = r.u32()
	m.Seq = r.u64()
	m.Off = int64(r.u64())
	r.fixed(m.Sum[:])
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
}

// Type implements Msg.
func (*ItemEnd) Type() Type { return TItemEnd }
func (m *ItemEnd) appendBody(b []byte) []byte {
	b = appendU32(b, m.Item)
	b = appendU64(b, uint64(m.Size))
	b = appendU64(b, uint64(m.Bytes))
	b = append(b, m.Digest[:]...)
	return appendU64(b, m.Layout)
}
func (m *ItemEnd) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Item = r.u32()
	m.Size = int64(r.u64())
	m.Bytes = int64(r.u64())
	r.fixed(m.Digest[:])
	m.Layout = r.u64()
	return r.done()
}

// End closes the session's data: the number of chunks and payload bytes.
type End struct {
	Chunks uint64
	Bytes  int64
}

// Type implements Msg.
func (*End) Type() Type { return TEnd }
func (m *End) appendBody(b []byte) []byte {
	b = appendU64(b, m.Chunks)
	return appendU64(b, uint64(m.Bytes))
}
func (m *End) decodeBody(b []byte) error {
	r := reader{b: b}
	m.Chunks = r.u64()
	m.Bytes = int64(r.u64())
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
