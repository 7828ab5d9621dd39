package httpboot

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/state"
)

// testKey is the session key of the test servers.
var testKey = []byte("the session key of the httpboot tests")

// answer is one API call's outcome.
type answer struct {
	code  int
	reply Reply
	body  string // raw
	nonce string // of the request, "" when unsigned
	hdr   http.Header
}

// call sends method path with body to ts, signed with c unless c is nil,
// at now (time.Now when zero).
func call(t *testing.T, base, method, path string, c *Credential, body string, now time.Time) answer {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	require.NoError(t, err)
	if body == "" {
		req.Body = http.NoBody
	}
	var a answer
	if c != nil {
		if now.IsZero() {
			now = time.Now()
		}
		a.nonce = Sign(req, *c, []byte(body), now)
	}
	return send(t, req, a)
}

func send(t *testing.T, req *http.Request, a answer) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a.code, a.body, a.hdr = resp.StatusCode, string(b), resp.Header
	json.Unmarshal(b, &a.reply)
	if a.code == http.StatusUnauthorized {
		require.Equal(t, AuthScheme, resp.Header.Get("WWW-Authenticate"))
	}
	return a
}

// approve adds mac to the store (state new, fresh agent key) and returns
// its agent credential.
func approve(t *testing.T, s *Server, mac string) Credential {
	t.Helper()
	m, err := s.Store.Add(mac, "")
	require.NoError(t, err)
	return Credential{Role: RoleAgent, Key: AgentKey(s.Key, m.MAC, m.KeyID)}
}

// registration is an agent's registration request with a fresh answer
// key.
type registration struct {
	priv *ecdh.PrivateKey
	req  RegisterRequest
}

func newRegistration(t *testing.T, mac, ip, step string) registration {
	t.Helper()
	k, err := NewAnswerKey()
	require.NoError(t, err)
	return registration{priv: k, req: RegisterRequest{MAC: mac, IP: ip, Port: 9998, Session: "lab", Step: step, Pub: EncodeAnswerKey(k.PublicKey())}}
}

func (r registration) body() string {
	b, _ := json.Marshal(r.req)
	return string(b)
}

// register posts r signed with c and, when it succeeded, opens the
// answer.
func register(t *testing.T, base string, c Credential, r registration) (answer, Credentials) {
	t.Helper()
	a := call(t, base, http.MethodPost, PathRegister, &c, r.body(), time.Time{})
	if a.code != http.StatusOK {
		return a, Credentials{}
	}
	creds, err := OpenAnswer(r.priv, c, r.req.MAC, a.nonce, a.reply.Answer)
	require.NoError(t, err)
	return a, creds
}

// machineOf returns the machine credential in creds.
func machineOf(creds Credentials) *Credential {
	return &Credential{Role: RoleMachine, Key: creds.MachineKey}
}

func operator() *Credential {
	c := Operator(testKey)
	return &c
}

func listAs(t *testing.T, base string, c *Credential) []state.Machine {
	t.Helper()
	a := call(t, base, http.MethodGet, PathMachines, c, "", time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	var ms []state.Machine
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(a.body))).Decode(&ms))
	return ms
}
