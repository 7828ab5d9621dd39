// Package seal protects the frames of the herd chain (ring/wire) with a
// session key. It is pure: no sockets, no files, no clock. Every primitive
// is a standard one used through a published construction:
//
//   - Each hop (a TCP connection from a node to the next) runs the Noise
//     handshake NNpsk0 with X25519, AES-256-GCM and SHA-256 (the Noise
//     Protocol Framework, revision 34, through github.com/flynn/noise). Both
//     sides mix in a pre-shared key derived from the session key (HKDF),
//     and the Hello's fields as the prologue, so a peer without the key, or
//     a Hello changed on the way, fails the handshake. Fresh ephemeral keys
//     on both sides make the hop's keys new on every connection (a
//     replayed Hello leads nowhere; recorded traffic stays sealed if the
//     session key leaks later: forward secrecy for the hop keys).
//   - After the handshake every control frame, in both directions, is
//     sealed under the hop's keys (AES-256-GCM with Noise's counter nonce,
//     the frame header as associated data): a stranger can neither read it
//     nor inject, alter, replay, reorder, drop or splice one in without the
//     hop failing.
//   - Chunks are sealed once, by the source, with AES-256-GCM under a data
//     key the source draws at random for the session and sends in the
//     (sealed) manifest, with a random 96-bit nonce per chunk and the
//     chunk's position (session, item, sequence, offset, flags) as
//     associated data. Relays forward the sealed bytes as they are and open
//     them once to write them; re-sealing at every hop would double a
//     relay's crypto work. Each Data frame also carries a 16-byte hop tag
//     (AES-256-GCM with no plaintext under the hop's keys, over the frame's
//     header, fixed fields and the source's tag) so that Data frames take
//     part in the hop's counter sequence like every other frame.
//   - The source's word travels end to end: the manifest, every item end
//     (its digest) and the end of the session carry an HMAC-SHA256 under a
//     key derived from the session key and the session id (SourceKey),
//     which every node checks before it writes a byte or declares success.
//
// Without a session key (herd's --insecure mode) Plain channels pass frames
// as they are, and chunks carry an xxh3-128 checksum against accidents, not
// attackers.
//
// Public so that the construction can be reviewed and tested on its own;
// only ring uses it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/flynn/noise"
	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"

	"github.com/herd-cluster/herd/ring/wire"
)

// Sizes.
const (
	TagSize = 16 // an AES-GCM tag: the hop tag of a Data frame, the tag of a sealed frame
	// MinKeySize is the shortest session key accepted.
	MinKeySize = 16
)

// Errors callers may branch on.
var (
	// ErrAuth: a frame or handshake message failed authentication: a
	// peer without the key, or bytes changed, replayed, reordered or
	// dropped on the way.
	ErrAuth = errors.New("seal: not authenticated")
	// ErrKey: the session key is unusable.
	ErrKey = errors.New("seal: bad session key")
)

var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// derive returns n bytes of HKDF-SHA256 of key for salt and purpose.
func derive(key, salt []byte, purpose string, n int) []byte {
	out, err := hkdf.Key(sha256.New, key, salt, "herd ring v2 "+purpose, n)
	if err != nil { // only for n > 255*32
		panic(err)
	}
	return out
}

// CheckKey reports whether key can key a session.
func CheckKey(key []byte) error {
	if len(key) < MinKeySize {
		return fmt.Errorf("%w: %d bytes, want at least %d", ErrKey, len(key), MinKeySize)
	}
	return nil
}

// HopPSK is the Noise pre-shared key of every hop of sessions keyed by key.
func HopPSK(key []byte) []byte { return derive(key, nil, "hop psk", 32) }

// Initiator is the upstream side of a hop handshake in progress.
type Initiator struct {
	hs *noise.HandshakeState
}

// Initiate starts a hop handshake as the upstream node. prologue is the
// Hello's (wire.Hello.Prologue); the returned message goes in Hello.Noise.
func Initiate(key, prologue []byte) (*Initiator, [wire.HandshakeSize]byte, error) {
	var msg [wire.HandshakeSize]byte
	if err := CheckKey(key); err != nil {
		return nil, msg, err
	}
	hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: suite, Pattern: noise.HandshakeNN, Initiator: true,
		Prologue: prologue, PresharedKey: HopPSK(key), PresharedKeyPlacement: 0})
	if err != nil {
		return nil, msg, fmt.Errorf("seal: handshake: %w", err)
	}
	out, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, msg, fmt.Errorf("seal: handshake: %w", err)
	}
	if len(out) != wire.HandshakeSize {
		return nil, msg, fmt.Errorf("seal: handshake message of %d bytes", len(out))
	}
	copy(msg[:], out)
	return &Initiator{hs: hs}, msg, nil
}

// Finish takes the downstream's answer (Challenge.Noise) and returns the
// hop's channel. An error wrapping ErrAuth means the downstream does not
// hold the key (or the messages were changed on the way).
func (i *Initiator) Finish(msg [wire.HandshakeSize]byte) (*Channel, error) {
	_, send, recv, err := i.hs.ReadMessage(nil, msg[:])
	if err != nil || send == nil || recv == nil {
		return nil, fmt.Errorf("%w: the node does not prove the session key", ErrAuth)
	}
	return &Channel{send: send, recv: recv}, nil
}

// Respond runs the downstream side of a hop handshake: it checks the
// upstream's message (Hello.Noise, with the Hello's prologue) and returns
// the answer for Challenge.Noise and the hop's channel. An error wrapping
// ErrAuth means the upstream does not hold the key. The upstream is known
// to be live (not a replay) only once its first sealed frame (Proof)
// opens.
func Respond(key, prologue []byte, msg [wire.HandshakeSize]byte) ([wire.HandshakeSize]byte, *Channel, error) {
	var reply [wire.HandshakeSize]byte
	if err := CheckKey(key); err != nil {
		return reply, nil, err
	}
	hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: suite, Pattern: noise.HandshakeNN, Initiator: false,
		Prologue: prologue, PresharedKey: HopPSK(key), PresharedKeyPlacement: 0})
	if err != nil {
		return reply, nil, fmt.Errorf("seal: handshake: %w", err)
	}
	if _, _, _, err := hs.ReadMessage(nil, msg[:]); err != nil {
		return reply, nil, fmt.Errorf("%w: wrong key proof", ErrAuth)
	}
	out, recv, send, err := hs.WriteMessage(nil, nil)
	if err != nil || send == nil || recv == nil || len(out) != wire.HandshakeSize {
		return reply, nil, fmt.Errorf("seal: handshake: %v", err)
	}
	copy(reply[:], out)
	return reply, &Channel{send: send, recv: recv}, nil
}

// Channel seals the frames one side of a hop sends and opens those it
// receives. The sending methods (SealFrame, HopTag) must be called from one
// goroutine at a time, in the order the frames go on the wire; the
// receiving ones (OpenFrame, CheckHopTag) likewise, in the order they
// arrive. Both directions are independent: a writer and a reader may run
// at once. A nil or Plain channel passes frames as they are.
type Channel struct {
	send, recv *noise.CipherState
}

// Plain returns the channel of a hop without key.
func Plain() *Channel { return &Channel{} }

// Keyed reports whether the channel seals.
func (c *Channel) Keyed() bool { return c != nil && c.send != nil }

// Overhead is what sealing adds to a control frame's body.
func (c *Channel) Overhead() int {
	if c.Keyed() {
		return TagSize
	}
	return 0
}

// HopTagSize is the size of the hop tag that ends every Data frame on a
// keyed hop (0 without key).
func (c *Channel) HopTagSize() int {
	if c.Keyed() {
		return TagSize
	}
	return 0
}

// SealFrame seals frame (a header and body from wire.Encode) in place
// where its capacity allows and returns the frame to send: the header with
// the sealed length, the body sealed. Data frames go through HopTag.
func (c *Channel) SealFrame(frame []byte) ([]byte, error) {
	if !c.Keyed() {
		return frame, nil
	}
	if len(frame) < wire.HeaderSize {
		return nil, fmt.Errorf("seal: frame of %d bytes", len(frame))
	}
	n := len(frame) - wire.HeaderSize + TagSize
	if n > wire.MaxBody {
		return nil, fmt.Errorf("seal: frame body of %d bytes", n)
	}
	out := make([]byte, wire.HeaderSize, wire.HeaderSize+n)
	copy(out, frame[:wire.HeaderSize])
	binary.LittleEndian.PutUint32(out[4:], uint32(n))
	var ad [wire.HeaderSize]byte
	copy(ad[:], out)
	return c.send.Encrypt(out, ad[:], frame[wire.HeaderSize:])
}

// OpenFrame opens the sealed body of a control frame whose header is hdr
// (as received) and returns the plain body, in body's storage.
func (c *Channel) OpenFrame(hdr []byte, body []byte) ([]byte, error) {
	if !c.Keyed() {
		return body, nil
	}
	if len(hdr) != wire.HeaderSize || len(body) < TagSize {
		return nil, fmt.Errorf("%w: frame too short to be sealed", ErrAuth)
	}
	var ad [wire.HeaderSize]byte // a copy: hdr may share storage with body
	copy(ad[:], hdr)
	p, err := c.recv.Decrypt(body[:0], ad[:], body)
	if err != nil {
		return nil, fmt.Errorf("%w: %s frame", ErrAuth, wire.Type(hdr[2]))
	}
	return p, nil
}

// hopAD is what a Data frame's hop tag covers: its header, fixed fields
// and the last TagSize bytes of its payload (the source's tag, which
// covers the rest). frame is the frame without its hop tag.
func hopAD(frame []byte) []byte {
	ad := make([]byte, 0, wire.DataHeaderSize+TagSize)
	ad = append(ad, frame[:wire.DataHeaderSize]...)
	return append(ad, frame[len(frame)-TagSize:]...)
}

// HopTag returns the tag that follows the Data frame (header, fixed fields
// and sealed payload, without hop tag) on this hop; nil without key.
func (c *Channel) HopTag(frame []byte) ([]byte, error) {
	if !c.Keyed() {
		return nil, nil
	}
	if len(frame) < wire.DataHeaderSize+TagSize {
		return nil, fmt.Errorf("seal: data frame of %d bytes", len(frame))
	}
	return c.send.Encrypt(make([]byte, 0, TagSize), hopAD(frame), nil)
}

// CheckHopTag checks the hop tag that ends frame (a whole Data frame as
// received) and returns the frame without it.
func (c *Channel) CheckHopTag(frame []byte) ([]byte, error) {
	if !c.Keyed() {
		return frame, nil
	}
	if len(frame) < wire.DataHeaderSize+2*TagSize {
		return nil, fmt.Errorf("%w: data frame too short to be sealed", ErrAuth)
	}
	body, tag := frame[:len(frame)-TagSize], frame[len(frame)-TagSize:]
	if _, err := c.recv.Decrypt(nil, hopAD(body), tag); err != nil {
		return nil, fmt.Errorf("%w: data frame (hop tag)", ErrAuth)
	}
	return body, nil
}

// Chunks seals and opens chunk payloads. With a data key, a sealed payload
// is nonce (12 bytes), ciphertext, tag (16 bytes): AES-256-GCM with a
// random nonce and the chunk's position as associated data. Without, it is
// the bytes followed by an xxh3-128 of them and their position. A Chunks
// is safe for concurrent use.
type Chunks struct {
	aead cipher.AEAD // nil: no key
}

// MaxChunksPerKey bounds how many chunks one data key seals: random 96-bit
// nonces stay collision-free with overwhelming probability up to 2^32
// messages (NIST SP 800-38D). A session never comes near (2^32 chunks of
// 256 KiB are 1 PiB); the source refuses more.
const MaxChunksPerKey = 1 << 32

// NewChunks returns the chunk sealer of a session with data key dataKey
// (nil: no key, checksums only).
func NewChunks(dataKey []byte) (*Chunks, error) {
	if dataKey == nil {
		return &Chunks{}, nil
	}
	if len(dataKey) != wire.KeySize {
		return nil, fmt.Errorf("%w: data key of %d bytes", ErrKey, len(dataKey))
	}
	b, err := aes.NewCipher(dataKey)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, err
	}
	return &Chunks{aead: a}, nil
}

// Keyed reports whether chunks are sealed (not only checksummed).
func (c *Chunks) Keyed() bool { return c.aead != nil }

// Overhead is how much longer a sealed payload is than the chunk.
func (c *Chunks) Overhead() int {
	if c.aead != nil {
		return c.aead.Overhead()
	}
	return TagSize
}

// chunkAD binds a chunk to its place: session, item, sequence, offset and
// the header flags.
func chunkAD(d *wire.Data) []byte {
	ad := make([]byte, 0, 64)
	ad = append(ad, "herd chunk v2\x00"...)
	ad = d.AppendFixed(ad)
	return append(ad, d.Flags)
}

// Seal appends the sealed payload of chunk bytes p, at the place d says
// (its Session, Item, Seq, Off and Flags; d.Payload is ignored), to dst.
// p may be dst[len(dst):len(dst)+len(p)] itself only when the key is off;
// with a key, p must not overlap the output unless p is exactly where the
// ciphertext goes (see cipher.AEAD; NewGCMWithRandomNonce writes nonce
// first).
func (c *Chunks) Seal(dst []byte, d *wire.Data, p []byte) []byte {
	if c.aead != nil {
		return c.aead.Seal(dst, nil, p, chunkAD(d))
	}
	sum := c.sum(d, p)
	dst = append(dst, p...)
	return append(dst, sum[:]...)
}

// Open checks the sealed payload of d (d.Payload as received) and returns
// the chunk's bytes: appended to dst with a key; without, in d.Payload's
// storage (dst unused).
func (c *Chunks) Open(dst []byte, d *wire.Data) ([]byte, error) {
	if c.aead != nil {
		p, err := c.aead.Open(dst, nil, d.Payload, chunkAD(d))
		if err != nil {
			return nil, fmt.Errorf("%w: chunk %d (item %d at offset %d)", ErrAuth, d.Seq, d.Item, d.Off)
		}
		return p, nil
	}
	if len(d.Payload) < TagSize {
		return nil, fmt.Errorf("%w: chunk %d of %d bytes has no checksum", ErrAuth, d.Seq, len(d.Payload))
	}
	p, got := d.Payload[:len(d.Payload)-TagSize], d.Payload[len(d.Payload)-TagSize:]
	want := c.sum(d, p)
	if subtle.ConstantTimeCompare(want[:], got) != 1 {
		return nil, fmt.Errorf("%w: chunk %d (item %d at offset %d): checksum mismatch", ErrAuth, d.Seq, d.Item, d.Off)
	}
	return p, nil
}

// sum is the keyless checksum: xxh3-128 of p seeded with d's place.
func (c *Chunks) sum(d *wire.Data, p []byte) [TagSize]byte {
	fix := binary.LittleEndian.AppendUint64(chunkAD(d), uint64(len(p)))
	v := xxh3.Hash128Seed(p, xxh3.Hash(fix)).Bytes()
	return v
}

// Word authenticates the source's word: the manifest, item ends and the
// end of a session, end to end (every relay forwards them as they are).
// The zero Word (no key) makes and accepts zero MACs.
type Word struct {
	key []byte
}

// SourceKey returns the Word of session s keyed by key (nil: no key).
func SourceKey(key []byte, s wire.SessionID) Word {
	if key == nil {
		return Word{}
	}
	return Word{key: derive(key, s[:], "source word", 32)}
}

// Keyed reports whether the Word authenticates.
func (w Word) Keyed() bool { return w.key != nil }

func (w Word) mac(label string, body []byte) [wire.MACSize]byte {
	var out [wire.MACSize]byte
	if w.key == nil {
		return out
	}
	m := hmac.New(sha256.New, w.key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(body)
	m.Sum(out[:0])
	return out
}

func (w Word) check(label string, body []byte, got [wire.MACSize]byte) bool {
	if w.key == nil {
		return true
	}
	want := w.mac(label, body)
	return hmac.Equal(want[:], got[:])
}

// body is m's frame with its Auth field zero.
func manifestBody(m *wire.Manifest) []byte {
	c := *m
	c.Auth = [wire.MACSize]byte{}
	return wire.Encode(&c)
}

func itemEndBody(s wire.SessionID, m *wire.ItemEnd) []byte {
	c := *m
	c.Auth = [wire.MACSize]byte{}
	return append(s[:len(s):len(s)], wire.Encode(&c)...)
}

func endBody(s wire.SessionID, m *wire.End) []byte {
	c := *m
	c.Auth = [wire.MACSize]byte{}
	return append(s[:len(s):len(s)], wire.Encode(&c)...)
}

// SignManifest sets m.Auth.
func (w Word) SignManifest(m *wire.Manifest) { m.Auth = w.mac("manifest", manifestBody(m)) }

// CheckManifest reports whether m.Auth is the source's.
func (w Word) CheckManifest(m *wire.Manifest) bool {
	return w.check("manifest", manifestBody(m), m.Auth)
}

// SignItemEnd sets m.Auth for session s.
func (w Word) SignItemEnd(s wire.SessionID, m *wire.ItemEnd) {
	m.Auth = w.mac("item end", itemEndBody(s, m))
}

// CheckItemEnd reports whether m.Auth is the source's for session s.
func (w Word) CheckItemEnd(s wire.SessionID, m *wire.ItemEnd) bool {
	return w.check("item end", itemEndBody(s, m), m.Auth)
}

// SignEnd sets m.Auth for session s.
func (w Word) SignEnd(s wire.SessionID, m *wire.End) { m.Auth = w.mac("end", endBody(s, m)) }

// CheckEnd reports whether m.Auth is the source's for session s.
func (w Word) CheckEnd(s wire.SessionID, m *wire.End) bool {
	return w.check("end", endBody(s, m), m.Auth)
}

// Journal authenticates what a node records of its own writes (its
// journal, for a restart): a keyed BLAKE3 per chunk under a key derived
// from the session key, the session and the node's index, so that a
// journal written by anyone without the key, or for other bytes, is found
// out record by record. Without key, an xxh3-128 checks for accidents.
// A Journal is not safe for concurrent use.
type Journal struct {
	h *blake3.Hasher // nil: no key
}

// JournalKey returns the journal sealer of node index in session s (key
// nil: no key).
func JournalKey(key []byte, s wire.SessionID, index uint32) *Journal {
	if key == nil {
		return &Journal{}
	}
	k := derive(key, binary.LittleEndian.AppendUint32(s[:len(s):len(s)], index), "journal", 32)
	h, err := blake3.NewKeyed(k)
	if err != nil { // k is 32 bytes
		panic(err)
	}
	return &Journal{h: h}
}

// Sum returns the record value of chunk p written at off of item.
func (j *Journal) Sum(item uint32, off int64, p []byte) [TagSize]byte {
	var fix [20]byte
	binary.LittleEndian.PutUint32(fix[:], item)
	binary.LittleEndian.PutUint64(fix[4:], uint64(off))
	binary.LittleEndian.PutUint64(fix[12:], uint64(len(p)))
	var out [TagSize]byte
	if j.h == nil {
		v := xxh3.Hash128Seed(p, xxh3.Hash(fix[:])).Bytes()
		copy(out[:], v[:])
		return out
	}
	j.h.Reset()
	j.h.Write(fix[:])
	j.h.Write(p)
	var full [32]byte
	j.h.Sum(full[:0])
	copy(out[:], full[:])
	return out
}
