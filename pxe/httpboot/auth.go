package httpboot

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// API authentication.
//
// Every API call, reads included, carries
//
//	Authorization: HERD-HMAC-SHA256 k=ROLE,t=UNIXSECONDS,n=NONCE,s=SIGNATURE
//
// where ROLE names the key that signed (see Role and keys.go) and
// SIGNATURE is the hex HMAC-SHA256, under HKDF(role key, "herd api v2
// request " ROLE), of
//
//	"herd-api-v2\n" ROLE "\n" METHOD "\n" PATH "\n" t "\n" NONCE "\n" hex(SHA-256(body))
//
// t must be within MaxSkew of the server's clock and a nonce is accepted
// once within that window, so a captured request cannot be replayed.
// Which roles a call accepts:
//
//	POST /api/v1/register        agent (the agent key, once) or machine (a stage 2 registering for the image)
//	POST /api/v1/report          machine
//	GET  /api/v1/machines        operator
//	GET  /api/v1/machines/{mac}  operator, or the machine key of that MAC
//	POST /api/v1/machines/{mac}  operator
//
// A call without a valid signature of an accepted role gets 401 and
// changes nothing; the body of a 401 names no machine and reads the same
// whether the MAC is known or not. Boot files (/boot.ipxe, /ipxe/<mac>,
// the boot folder, TFTP) cannot be authenticated (firmware does not
// sign) and carry no key but one machine's agent key.

// AuthScheme names the Authorization scheme.
const AuthScheme = "HERD-HMAC-SHA256"

// MaxSkew is how far a request's timestamp may be from the server's clock.
const MaxSkew = 5 * time.Minute

// ErrAuth means a request's authentication is missing or wrong.
var ErrAuth = errors.New("httpboot: request not authenticated")

// Role says which kind of key signed a request.
type Role string

// The roles.
const (
	// RoleOperator signs with OperatorKey(session key): herd pxe list
	// and set, herd deploy's own reads.
	RoleOperator Role = "operator"
	// RoleAgent signs with one machine's agent key: its registration.
	RoleAgent Role = "agent"
	// RoleMachine signs with the machine key an agent got in the answer
	// to its registration.
	RoleMachine Role = "machine"
)

func (r Role) valid() bool {
	return r == RoleOperator || r == RoleAgent || r == RoleMachine
}

// Credential is what a client signs with: a role and that role's key
// (the operator key, an agent key or a machine key; never the session
// key itself).
type Credential struct {
	Role Role
	Key  []byte
}

// Operator returns the operator's credential for a session key.
func Operator(sessionKey []byte) Credential {
	return Credential{Role: RoleOperator, Key: OperatorKey(sessionKey)}
}

// signature computes the hex signature of one request.
func signature(c Credential, method, path, ts, nonce string, body []byte) string {
	bh := sha256.Sum256(body)
	m := hmac.New(sha256.New, derive(c.Key, "herd api v2 request "+string(c.Role)))
	fmt.Fprintf(m, "herd-api-v2\n%s\n%s\n%s\n%s\n%s\n%x", c.Role, method, path, ts, nonce, bh)
	return hex.EncodeToString(m.Sum(nil))
}

// Sign sets r's Authorization header for body (which must be what r
// sends) with c, at time now. It returns the request's nonce, to which
// the answer of a registration is bound (see OpenAnswer).
func Sign(r *http.Request, c Credential, body []byte, now time.Time) string {
	var nb [16]byte
	rand.Read(nb[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := hex.EncodeToString(nb[:])
	sig := signature(c, r.Method, r.URL.Path, ts, nonce, body)
	r.Header.Set("Authorization", AuthScheme+" k="+string(c.Role)+",t="+ts+",n="+nonce+",s="+sig)
	return nonce
}

// AuthHeader is a parsed Authorization header of the HERD-HMAC-SHA256
// scheme.
type AuthHeader struct {
	Role      Role
	Time      int64
	Nonce     string
	Signature string
}

// ParseAuthHeader parses the value of an Authorization header.
func ParseAuthHeader(v string) (AuthHeader, error) {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || scheme != AuthScheme {
		return AuthHeader{}, fmt.Errorf("%w: want scheme %s", ErrAuth, AuthScheme)
	}
	var h AuthHeader
	seen := map[string]bool{}
	for _, kv := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || seen[k] {
			return AuthHeader{}, fmt.Errorf("%w: bad parameter %q", ErrAuth, kv)
		}
		seen[k] = true
		switch k {
		case "k":
			h.Role = Role(val)
			if !h.Role.valid() {
				return AuthHeader{}, fmt.Errorf("%w: unknown role %q", ErrAuth, val)
			}
		case "t":
			t, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return AuthHeader{}, fmt.Errorf("%w: bad time %q", ErrAuth, val)
			}
			h.Time = t
		case "n":
			if len(val) < 16 || len(val) > 64 || !isHex(val) {
				return AuthHeader{}, fmt.Errorf("%w: bad nonce %q", ErrAuth, val)
			}
			h.Nonce = val
		case "s":
			if len(val) != 64 || !isHex(val) {
				return AuthHeader{}, fmt.Errorf("%w: bad signature", ErrAuth)
			}
			h.Signature = val
		default:
			return AuthHeader{}, fmt.Errorf("%w: unknown parameter %q", ErrAuth, k)
		}
	}
	if !seen["k"] || !seen["t"] || !seen["n"] || !seen["s"] {
		return AuthHeader{}, fmt.Errorf("%w: want k, t, n and s", ErrAuth)
	}
	return h, nil
}

func isHex(s string) bool {
	return strings.Trim(s, "0123456789abcdef") == ""
}

// verifier checks signed requests and remembers nonces within MaxSkew.
type verifier struct {
	now func() time.Time

	mu     sync.Mutex
	nonces map[string]time.Time
}

// verify checks that h, from r with body, is signed with key in h's role.
// The nonce is spent only by a request whose signature is right.
func (v *verifier) verify(r *http.Request, h AuthHeader, key, body []byte) error {
	now := v.now()
	t := time.Unix(h.Time, 0)
	if d := now.Sub(t); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%w: timestamp %s is %v away from the server's clock %s", ErrAuth, t.UTC().Format(time.RFC3339), d.Round(time.Second), now.UTC().Format(time.RFC3339))
	}
	want := signature(Credential{Role: h.Role, Key: key}, r.Method, r.URL.Path, strconv.FormatInt(h.Time, 10), h.Nonce, body)
	if !hmac.Equal([]byte(want), []byte(h.Signature)) {
		return fmt.Errorf("%w: wrong signature (not signed with this server's %s key?)", ErrAuth, h.Role)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for n, seen := range v.nonces {
		if now.Sub(seen) > 2*MaxSkew {
			delete(v.nonces, n)
		}
	}
	if _, dup := v.nonces[h.Nonce]; dup {
		return fmt.Errorf("%w: replayed request (nonce seen before)", ErrAuth)
	}
	v.nonces[h.Nonce] = now
	return nil
}
