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
// When the server has a session key, every state-changing API call
// (register, report, an operator's state change) must carry
//
//	Authorization: HERD-HMAC-SHA256 t=UNIXSECONDS,n=NONCE,s=SIGNATURE
//
// where SIGNATURE is the hex HMAC-SHA256, under APIKey(session key), of
//
//	"herd-api-v1\n" METHOD "\n" PATH "\n" t "\n" NONCE "\n" hex(SHA-256(body))
//
// t must be within MaxSkew of the server's clock and a nonce is accepted
// once within that window, so a captured request cannot be replayed. The
// session key reaches the agents on their kernel command line
// (herd.key=HEX), as in the seed's model: anyone who can read the boot
// configuration served on the provisioning network can learn it, so the
// key keeps out machines and networks that do not boot from this server,
// not an attacker on the provisioning network itself.

// AuthScheme names the Authorization scheme.
const AuthScheme = "HERD-HMAC-SHA256"

// MaxSkew is how far a request's timestamp may be from the server's clock.
const MaxSkew = 5 * time.Minute

// ErrAuth means a request's authentication is missing or wrong.
var ErrAuth = errors.New("httpboot: request not authenticated")

// APIKey derives the key that signs API requests from the session key
// (the bytes of the key file given to herd send and deploy), so that the
// chain's keys and the API's never coincide.
func APIKey(sessionKey []byte) []byte {
	m := hmac.New(sha256.New, sessionKey)
	m.Write([]byte("herd api v1"))
	return m.Sum(nil)
}

// signature computes the hex signature of one request.
func signature(apiKey []byte, method, path, ts, nonce string, body []byte) string {
	bh := sha256.Sum256(body)
	m := hmac.New(sha256.New, apiKey)
	fmt.Fprintf(m, "herd-api-v1\n%s\n%s\n%s\n%s\n%x", method, path, ts, nonce, bh)
	return hex.EncodeToString(m.Sum(nil))
}

// Sign sets r's Authorization header for body (which must be what r
// sends) with the API key of sessionKey, at time now.
func Sign(r *http.Request, sessionKey, body []byte, now time.Time) {
	var nb [12]byte
	rand.Read(nb[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := hex.EncodeToString(nb[:])
	sig := signature(APIKey(sessionKey), r.Method, r.URL.Path, ts, nonce, body)
	r.Header.Set("Authorization", AuthScheme+" t="+ts+",n="+nonce+",s="+sig)
}

// AuthHeader is a parsed Authorization header of the HERD-HMAC-SHA256
// scheme.
type AuthHeader struct {
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
	if !seen["t"] || !seen["n"] || !seen["s"] {
		return AuthHeader{}, fmt.Errorf("%w: want t, n and s", ErrAuth)
	}
	return h, nil
}

func isHex(s string) bool {
	return strings.Trim(s, "0123456789abcdef") == ""
}

// verifier checks signed requests and remembers nonces within MaxSkew.
type verifier struct {
	key []byte // API key
	now func() time.Time

	mu     sync.Mutex
	nonces map[string]time.Time
}

// verify checks r's Authorization for body.
func (v *verifier) verify(r *http.Request, body []byte) error {
	h, err := ParseAuthHeader(r.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	now := v.now()
	t := time.Unix(h.Time, 0)
	if d := now.Sub(t); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%w: timestamp %s is %v away from the server's clock %s", ErrAuth, t.UTC().Format(time.RFC3339), d.Round(time.Second), now.UTC().Format(time.RFC3339))
	}
	want := signature(v.key, r.Method, r.URL.Path, strconv.FormatInt(h.Time, 10), h.Nonce, body)
	if !hmac.Equal([]byte(want), []byte(h.Signature)) {
		return fmt.Errorf("%w: wrong signature (not signed with this session's key?)", ErrAuth)
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
