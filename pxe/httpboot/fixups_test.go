package httpboot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/state"
)

func TestValidHostname(t *testing.T) {
	for _, ok := range []string{"node01", "n", "rack1-node07", "node07.rack1.example.org", "A-1", strings.Repeat("a", 63), strings.Repeat("a.", 126) + "a"} {
		assert.True(t, ValidHostname(ok), "%q", ok)
	}
	for _, bad := range []string{"", "-node", "node-", "node_1", "node 1", "node..a", ".node", "node.", "nöde", "n;rm -rf /", "a\nb", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "a"} {
		assert.False(t, ValidHostname(bad), "%q", bad)
	}
}

func FuzzValidHostname(f *testing.F) {
	for _, s := range []string{"node01", "a.b-c.d", "-x", "x..y", strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidHostname(s) {
			return
		}
		if len(s) > MaxHostname || strings.ContainsAny(s, " /\\\n\x00;$`'\"") || strings.HasPrefix(s, "-") || strings.Contains(s, "..") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestFixupsCheck(t *testing.T) {
	hook := Hook{Name: "a.sh", Script: []byte("true")}
	assert.NoError(t, Fixups{Identity: true, Hooks: []Hook{hook}, HookTimeout: time.Minute}.Check())
	many := make([]Hook, MaxHooks+1)
	for i := range many {
		many[i] = Hook{Name: fmt.Sprintf("h%d", i)}
	}
	for name, f := range map[string]Fixups{
		"too many hooks":      {Hooks: many},
		"a hook too large":    {Hooks: []Hook{{Name: "big.sh", Script: make([]byte, MaxHookSize+1)}}},
		"a hook without name": {Hooks: []Hook{{Script: []byte("true")}}},
		"a name with a slash": {Hooks: []Hook{{Name: "../a.sh"}}},
		"a name too long":     {Hooks: []Hook{{Name: strings.Repeat("a", MaxHookName+1)}}},
		"a control character": {Hooks: []Hook{{Name: "a\x1b[2J"}}},
		"a negative timeout":  {HookTimeout: -time.Second},
		"a timeout too long":  {HookTimeout: MaxHookTimeout + time.Second},
	} {
		assert.Error(t, f.Check(), name)
	}
}

// fullFixups are the largest orders an answer may carry.
func fullFixups() Credentials {
	c := Credentials{ChainKey: testKey, MachineKey: MachineKey(testKey, answerMAC, "aa"), Name: strings.Repeat("n", 63), Identity: true, HookTimeout: int64(MaxHookTimeout / time.Second)}
	for i := range MaxHooks {
		c.Hooks = append(c.Hooks, Hook{Name: strings.Repeat("<", MaxHookName-2) + fmt.Sprintf("%02d", i), Script: bytes.Repeat([]byte{0xff}, MaxHookSize)})
	}
	return c
}

func TestAnswerCarriesTheFixups(t *testing.T) {
	k, err := NewAnswerKey()
	require.NoError(t, err)
	agent := Credential{Role: RoleAgent, Key: AgentKey(testKey, answerMAC, "aa")}
	c := fullFixups()
	ans, err := SealAnswer(agent, k.PublicKey(), answerMAC, answerNonce, c)
	require.NoError(t, err)
	reply, _ := json.Marshal(Reply{OK: true, Answer: ans})
	assert.LessOrEqual(t, len(reply), MaxReply, "the largest answer fits the agent's reply limit")
	got, err := OpenAnswer(k, agent, answerMAC, answerNonce, ans)
	require.NoError(t, err)
	c.V, c.MAC = AnswerVersion, answerMAC
	assert.Equal(t, c, got)
	assert.Equal(t, Fixups{Identity: true, Hooks: c.Hooks, HookTimeout: MaxHookTimeout}, got.Orders())
}

func TestAnswerRefusesBadFixups(t *testing.T) {
	k, err := NewAnswerKey()
	require.NoError(t, err)
	agent := Credential{Role: RoleAgent, Key: AgentKey(testKey, answerMAC, "aa")}
	for name, edit := range map[string]func(c *Credentials){
		"a name that is not a host name": func(c *Credentials) { c.Name = "node1; reboot" },
		"a name with an empty label":     func(c *Credentials) { c.Name = "a..b" },
		"one hook too many":              func(c *Credentials) { c.Hooks = append(c.Hooks, Hook{Name: "x"}) },
		"a hook too large":               func(c *Credentials) { c.Hooks[3].Script = append(c.Hooks[3].Script, 0) },
		"a hook named with a slash":      func(c *Credentials) { c.Hooks[0].Name = "/etc/passwd" },
		"a negative timeout":             func(c *Credentials) { c.HookTimeout = -1 },
		"a timeout that overflows":       func(c *Credentials) { c.HookTimeout = 1 << 62 },
	} {
		t.Run(name, func(t *testing.T) {
			c := fullFixups()
			edit(&c)
			_, err := SealAnswer(agent, k.PublicKey(), answerMAC, answerNonce, c)
			require.Error(t, err, "the server seals no such orders")
			// A forged answer, sealed all the same, is refused by the agent.
			ans, err := seal(agent, k.PublicKey(), answerMAC, answerNonce, c)
			require.NoError(t, err)
			_, err = OpenAnswer(k, agent, answerMAC, answerNonce, ans)
			assert.ErrorIs(t, err, ErrAnswer)
		})
	}
}

func TestRegisterSealsTheFixups(t *testing.T) {
	ts, s, _ := setup(t, nil)
	hooks := []Hook{{Name: "a.sh", Script: []byte("echo $HERD_NAME")}}
	s.Fixups = Fixups{Identity: true, IdentityIfRoot: true, Hooks: hooks, HookTimeout: 90 * time.Second}
	const mac, mac2 = "52:54:00:aa:05:01", "52:54:00:aa:05:02"
	agent := approve(t, s, mac)
	_, err := s.Store.Add(mac, "node01")
	require.NoError(t, err)
	a, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.5", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.Equal(t, "node01", creds.Name)
	assert.Equal(t, Fixups{Identity: true, IdentityIfRoot: true, Hooks: hooks, HookTimeout: 90 * time.Second}, creds.Orders())

	// An agent waiting for a stage 2 gets no orders: they are for the system.
	agent2 := approve(t, s, mac2)
	_, err = s.Store.Add(mac2, "node02")
	require.NoError(t, err)
	a, creds = register(t, ts.URL, agent2, newRegistration(t, mac2, "10.9.0.6", state.StepStage2))
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.Equal(t, Credentials{V: AnswerVersion, MAC: mac2, ChainKey: testKey, MachineKey: creds.MachineKey}, creds)
}

func TestRegisterWithoutIdentitySendsNoName(t *testing.T) {
	ts, s, _ := setup(t, nil)
	s.Fixups = Fixups{Hooks: []Hook{{Name: "a.sh", Script: []byte("true")}}}
	const mac = "52:54:00:aa:05:03"
	agent := approve(t, s, mac)
	_, err := s.Store.Add(mac, "node03")
	require.NoError(t, err)
	a, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.7", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.Empty(t, creds.Name)
	assert.False(t, creds.Identity)
	assert.Len(t, creds.Hooks, 1)
}

func TestRegisterRefusesAMachineNamedBadly(t *testing.T) {
	ts, s, _ := setup(t, nil)
	s.Fixups = Fixups{Identity: true}
	const mac = "52:54:00:aa:05:04"
	agent := approve(t, s, mac)
	_, err := s.Store.Add(mac, "bad_name")
	require.NoError(t, err)
	a, _ := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.8", ""))
	assert.Equal(t, http.StatusBadRequest, a.code)
	assert.Contains(t, a.reply.Error, `machine name "bad_name" is not a host name`)
	m, _ := s.Store.Get(mac)
	assert.False(t, m.KeyUsed, "the refusal does not spend its agent key")
}

func TestReportKeepsTheAgentLog(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:05:05"
	agent := approve(t, s, mac)
	a, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.9", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	var lines []string
	for i := range 250 {
		lines = append(lines, fmt.Sprintf("herd: line %d", i))
	}
	lines[249] = "herd: hook a.sh: \x1b[2J" + strings.Repeat("x", 400)
	body, _ := json.Marshal(ReportRequest{MAC: mac, OK: true, Bytes: 1, AgentLog: lines, Fixups: "identity: hostname node05\x00" + strings.Repeat("y", 2000)})
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds), string(body), time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.Done, m.State, "a verified machine keeps its agent's log too")
	require.Len(t, m.AgentLog, state.MaxAgentLogLines)
	assert.Equal(t, "herd: line 50", m.AgentLog[0])
	assert.Equal(t, "herd: hook a.sh: ?[2J", m.AgentLog[199][:21])
	assert.Len(t, m.AgentLog[199], state.MaxLogLine)
	assert.Equal(t, "identity: hostname node05?", m.Fixups[:26])
	assert.Len(t, m.Fixups, state.MaxFixups)

	// Registering again clears them.
	_, err := s.Store.Set(mac, state.New, "")
	require.NoError(t, err)
	m, _ = s.Store.Get(mac)
	a, _ = register(t, ts.URL, Credential{Role: RoleAgent, Key: AgentKey(s.Key, mac, m.KeyID)}, newRegistration(t, mac, "10.9.0.9", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	m, _ = s.Store.Get(mac)
	assert.Empty(t, m.AgentLog)
	assert.Empty(t, m.Fixups)
}

func TestReportBodyLimit(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:05:06"
	agent := approve(t, s, mac)
	a, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.10", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	body, _ := json.Marshal(ReportRequest{MAC: mac, OK: true, AgentLog: []string{strings.Repeat("x", MaxBody)}})
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds), string(body), time.Time{})
	assert.Equal(t, http.StatusBadRequest, a.code)
	assert.Contains(t, a.reply.Error, "larger than 64 KiB")
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.Cloning, m.State)
}
