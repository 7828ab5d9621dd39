package httpboot

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/herd-cluster/herd/pxe/state"
)

// The registration answer.
//
// The chain key (the session key) reaches an agent only here. An agent
// registers with a fresh X25519 key pair of its own, the answer key,
// whose public half is RegisterRequest.Pub (base64, 32 bytes) in the
// signed request. The server answers with Reply.Answer, the base64 of
//
//	version (1 byte, AnswerVersion) || tag (32 bytes) || HPKE enc (32 bytes) || HPKE ciphertext
//
// HPKE is RFC 9180 in base mode with DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256 and AES-256-GCM (Go's crypto/hpke), sealed to Pub with info
//
//	"herd pxe answer v1\x00" MAC "\x00" NONCE
//
// (NONCE is the request's signature nonce, so an answer belongs to one
// request). The plaintext is the JSON of Credentials. tag is
// HMAC-SHA256 under HKDF(key that signed the request, "herd api v2
// answer " ROLE) of info || enc || ciphertext, checked before anything is
// decrypted.
//
// Why both: the agent key is in a boot file that travels in clear, so a
// key derived from it alone would let anyone who saw the boot file and
// the answer read the chain key. HPKE to a key pair the agent made after
// booting keeps a passive observer out even then; the tag tells the
// agent the answer comes from whoever holds its agent key (the server),
// so a stranger cannot hand it a chain key of his own. An active attacker
// who read the boot file can still register first or sit in the middle:
// see docs/security.md.

// AnswerVersion is the first byte of every registration answer.
const AnswerVersion = 1

// ErrAnswer means a registration answer could not be opened: malformed,
// not from the holder of the key that signed the request, not for this
// request or this answer key.
var ErrAnswer = errors.New("httpboot: bad registration answer")

// Credentials are what a registration answer holds.
type Credentials struct {
	// V is AnswerVersion.
	V int `json:"v"`
	// MAC is the machine the answer is for.
	MAC string `json:"mac"`
	// ChainKey is the session key: herd recv --key-file gets these bytes.
	ChainKey []byte `json:"chain_key"`
	// MachineKey signs the agent's later calls (RoleMachine).
	MachineKey []byte `json:"machine_key"`

	// The fix-ups of the cloned system (see Fixups), for an agent
	// waiting for the system (not for a stage 2).

	// Name is the machine's name (state.Machine.Name), a host name
	// (ValidHostname) or empty.
	Name string `json:"name,omitempty"`
	// Identity orders the identity fix-ups.
	Identity bool `json:"identity,omitempty"`
	// IdentityIfRoot: skip the identity on a clone with no root file
	// system (see Fixups.IdentityIfRoot).
	IdentityIfRoot bool `json:"identity_if_root,omitempty"`
	// Hooks are run in a chroot of the clone (MaxHooks of MaxHookSize).
	Hooks []Hook `json:"hooks,omitempty"`
	// HookTimeout bounds each hook, in seconds (0: the agent's default).
	HookTimeout int64 `json:"hook_timeout,omitempty"`
}

// Limits on what an answer may hold.
const (
	minChainKey = 16
	maxChainKey = 4096
	answerHead  = 1 + sha256.Size + 32 // version, tag, enc
	// maxAnswer bounds the sealed answer: the keys and the hooks, each
	// base64 in the JSON, and room for the rest.
	maxAnswer = answerHead + 2*maxChainKey + MaxHooks*(MaxHookSize*4/3+4+MaxHookName*6+32) + 4096
)

// MaxReply bounds the body of a registration's reply: the base64 of the
// largest answer and room for the rest. Every other reply is under
// 64 KiB.
const MaxReply = (maxAnswer+2)/3*4 + 1024

var (
	answerKDF  = hpke.HKDFSHA256()
	answerAEAD = hpke.AES256GCM()
)

func answerInfo(mac, nonce string) []byte {
	return []byte("herd pxe answer v1\x00" + mac + "\x00" + nonce)
}

func answerTag(signer Credential, info, sealed []byte) []byte {
	m := hmac.New(sha256.New, derive(signer.Key, "herd api v2 answer "+string(signer.Role)))
	m.Write(info)
	m.Write(sealed)
	return m.Sum(nil)
}

// NewAnswerKey makes the key pair an agent registers with; send
// EncodeAnswerKey(k.PublicKey()) as RegisterRequest.Pub.
func NewAnswerKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// EncodeAnswerKey returns the base64 form of an answer key's public half.
func EncodeAnswerKey(pub *ecdh.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub.Bytes())
}

// ParseAnswerKey parses RegisterRequest.Pub.
func ParseAnswerKey(s string) (*ecdh.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("httpboot: answer key %q: want the base64 of 32 bytes (an X25519 public key)", truncate(s, 60))
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("httpboot: answer key: %w", err)
	}
	return pub, nil
}

// SealAnswer seals c for the agent of mac whose request carried the
// answer key pub and the nonce, and was signed with signer. It returns
// Reply.Answer.
func SealAnswer(signer Credential, pub *ecdh.PublicKey, mac, nonce string, c Credentials) (string, error) {
	if len(c.ChainKey) < minChainKey || len(c.ChainKey) > maxChainKey || len(c.MachineKey) != KeySize {
		return "", fmt.Errorf("httpboot: seal answer: chain key of %d bytes, machine key of %d", len(c.ChainKey), len(c.MachineKey))
	}
	if err := c.checkOrders(); err != nil {
		return "", fmt.Errorf("httpboot: seal answer: %w", err)
	}
	return seal(signer, pub, mac, nonce, c)
}

// seal is SealAnswer without the checks of c (tests seal what a forger
// would).
func seal(signer Credential, pub *ecdh.PublicKey, mac, nonce string, c Credentials) (string, error) {
	c.V, c.MAC = AnswerVersion, mac
	plain, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("httpboot: seal answer: %w", err)
	}
	info := answerInfo(mac, nonce)
	sealed, err := hpke.Seal(pk, answerKDF, answerAEAD, info, plain)
	if err != nil {
		return "", fmt.Errorf("httpboot: seal answer: %w", err)
	}
	out := make([]byte, 0, 1+sha256.Size+len(sealed))
	out = append(out, AnswerVersion)
	out = append(out, answerTag(signer, info, sealed)...)
	out = append(out, sealed...)
	return base64.StdEncoding.EncodeToString(out), nil
}

// OpenAnswer opens the answer to the registration of mac that was signed
// with signer (the agent's credential), sent with the answer key priv and
// the nonce Sign returned. It fails with ErrAnswer unless the answer was
// sealed for exactly that.
func OpenAnswer(priv *ecdh.PrivateKey, signer Credential, mac, nonce, answer string) (Credentials, error) {
	bad := func(why string) (Credentials, error) {
		return Credentials{}, fmt.Errorf("%w: %s", ErrAnswer, why)
	}
	if answer == "" {
		return bad("none (a herd server of another version?)")
	}
	if norm, err := state.NormalizeMAC(mac); err == nil {
		mac = norm
	}
	if len(answer) > base64.StdEncoding.EncodedLen(maxAnswer) {
		return bad(fmt.Sprintf("%d characters", len(answer)))
	}
	b, err := base64.StdEncoding.DecodeString(answer)
	if err != nil {
		return bad("not base64")
	}
	if len(b) < answerHead+16 {
		return bad(fmt.Sprintf("%d bytes", len(b)))
	}
	if b[0] != AnswerVersion {
		return bad(fmt.Sprintf("version %d, this agent reads %d", b[0], AnswerVersion))
	}
	tag, sealed := b[1:1+sha256.Size], b[1+sha256.Size:]
	info := answerInfo(mac, nonce)
	if !hmac.Equal(tag, answerTag(signer, info, sealed)) {
		return bad("wrong tag (not from the holder of this machine's key, or not for this request)")
	}
	k, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return bad(err.Error())
	}
	plain, err := hpke.Open(k, answerKDF, answerAEAD, info, sealed)
	if err != nil {
		return bad("cannot decrypt (sealed to another answer key)")
	}
	var c Credentials
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return bad("contents: " + err.Error())
	}
	switch {
	case c.V != AnswerVersion:
		return bad(fmt.Sprintf("contents version %d", c.V))
	case c.MAC != mac:
		return bad(fmt.Sprintf("for %q, not %q", c.MAC, mac))
	case len(c.ChainKey) < minChainKey || len(c.ChainKey) > maxChainKey:
		return bad(fmt.Sprintf("chain key of %d bytes", len(c.ChainKey)))
	case len(c.MachineKey) != KeySize:
		return bad(fmt.Sprintf("machine key of %d bytes", len(c.MachineKey)))
	}
	if err := c.checkOrders(); err != nil {
		return bad(strings.TrimPrefix(err.Error(), "httpboot: "))
	}
	return c, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
