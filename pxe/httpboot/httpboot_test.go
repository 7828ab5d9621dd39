package httpboot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pxe/bootcfg"
	"github.com/herd-cluster/herd/pxe/state"
)

func setup(t *testing.T, mutate func(*Server)) (*httptest.Server, *Server, string) {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "boot")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel-bytes"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(top, "secret"), []byte("top secret"), 0o644))
	require.NoError(t, os.Symlink("../secret", filepath.Join(dir, "escape")))
	statePath := filepath.Join(top, "machines.json")
	st, err := state.Open(statePath)
	require.NoError(t, err)
	s := &Server{Dir: dir, Store: st, Key: testKey, Script: func(mac, base string) string {
		if m, ok := st.Get(mac); ok && m.State == state.Local {
			return bootcfg.IPXELocal()
		}
		return bootcfg.IPXEInstall(base+"/vmlinuz", base+"/initrd.img", "herd.session=t")
	}}
	if mutate != nil {
		mutate(s)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, s, statePath
}

func TestRegisterReportRoundTrip(t *testing.T) {
	ts, s, statePath := setup(t, nil)
	c1, c2 := approve(t, s, "52:54:00:AA:00:01"), approve(t, s, "52:54:00:aa:00:02")
	r1 := newRegistration(t, "52:54:00:AA:00:01", "10.9.0.101", "")
	a, creds1 := register(t, ts.URL, c1, r1)
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.True(t, a.reply.OK)
	assert.Equal(t, testKey, creds1.ChainKey, "the answer carries the chain key")
	r2 := newRegistration(t, "52:54:00:aa:00:02", "", "")
	a, creds2 := register(t, ts.URL, c2, r2)
	require.Equal(t, http.StatusOK, a.code, a.body)

	ms := listAs(t, ts.URL, operator())
	require.Len(t, ms, 2)
	assert.Equal(t, state.Cloning, ms[0].State)
	assert.Equal(t, "10.9.0.101", ms[0].IP)
	assert.Equal(t, "127.0.0.1", ms[1].IP, "IP defaults to the caller's address")

	a = call(t, ts.URL, "POST", PathReport, machineOf(creds1), `{"mac":"52:54:00:aa:00:01","ok":true,"error":"","bytes":4096}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds2), `{"mac":"52:54:00:aa:00:02","ok":false,"error":"disk /dev/vda not found","bytes":0}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)

	ms = listAs(t, ts.URL, operator())
	assert.Equal(t, state.Done, ms[0].State)
	assert.EqualValues(t, 4096, ms[0].Bytes)
	assert.Equal(t, state.Failed, ms[1].State)
	assert.Equal(t, "disk /dev/vda not found", ms[1].Reason)
	assert.False(t, ms[1].Updated.IsZero())

	// A second report for a machine that is no longer cloning conflicts.
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds1), `{"mac":"52:54:00:aa:00:01","ok":true}`, time.Time{})
	assert.Equal(t, http.StatusConflict, a.code)
	assert.False(t, a.reply.OK)
	// The failed machine got a fresh key for its next boot: the machine
	// key of its spent registration no longer reports.
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds2), `{"mac":"52:54:00:aa:00:02","ok":true}`, time.Time{})
	assert.Equal(t, http.StatusUnauthorized, a.code)
	// A machine key reports only for its own machine.
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds1), `{"mac":"52:54:00:aa:00:02","ok":true}`, time.Time{})
	assert.Equal(t, http.StatusUnauthorized, a.code)

	// The state survives in the file.
	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, ok := st.Get("52:54:00:aa:00:02")
	require.True(t, ok)
	assert.Equal(t, state.Failed, m.State)
}

func TestOperatorSet(t *testing.T) {
	ts, s, _ := setup(t, nil)
	a := call(t, ts.URL, "POST", PathMachines+"/52-54-00-aa-00-07", operator(), `{"state":"local"}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	ms := listAs(t, ts.URL, operator())
	require.Len(t, ms, 1)
	assert.Equal(t, "52:54:00:aa:00:07", ms[0].MAC)
	assert.Equal(t, state.Local, ms[0].State)
	_, body := get(t, ts.URL+PathIPXE+"52:54:00:aa:00:07")
	assert.Equal(t, bootcfg.IPXELocal(), body)

	a = call(t, ts.URL, "POST", PathMachines+"/52-54-00-aa-00-07", operator(), `{"state":"zombie"}`, time.Time{})
	assert.Equal(t, http.StatusBadRequest, a.code)
	a = call(t, ts.URL, "POST", PathMachines+"/nope", operator(), `{"state":"new"}`, time.Time{})
	assert.Equal(t, http.StatusBadRequest, a.code)
	_ = s
}

// TestAgentKeysCannotActAsTheOperator: herd pxe set … local signed with
// a machine's agent key or machine key is refused and changes nothing.
func TestAgentKeysCannotActAsTheOperator(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:00:08"
	agent := approve(t, s, mac)
	for name, c := range map[string]Credential{
		"agent key":                       agent,
		"agent key claiming the operator": {Role: RoleOperator, Key: agent.Key},
		"session key as operator":         {Role: RoleOperator, Key: testKey},
	} {
		a := call(t, ts.URL, "POST", PathMachines+"/"+mac, &c, `{"state":"local"}`, time.Time{})
		assert.Equal(t, http.StatusUnauthorized, a.code, name)
		a = call(t, ts.URL, "GET", PathMachines, &c, "", time.Time{})
		assert.Equal(t, http.StatusUnauthorized, a.code, name)
		assert.NotContains(t, a.body, mac, name)
	}
	_, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.8", ""))
	for _, path := range []string{PathMachines + "/" + mac, PathMachines} {
		a := call(t, ts.URL, "POST", path, machineOf(creds), `{"state":"local"}`, time.Time{})
		assert.Contains(t, []int{http.StatusUnauthorized, http.StatusMethodNotAllowed}, a.code, path)
	}
	a := call(t, ts.URL, "GET", PathMachines, machineOf(creds), "", time.Time{})
	assert.Equal(t, http.StatusUnauthorized, a.code, "an agent does not list the others")
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.Cloning, m.State, "nothing changed")
}

func TestRegisterRefusals(t *testing.T) {
	ts, s, _ := setup(t, func(s *Server) {
		s.Allow = func(mac string) bool { return mac == "52:54:00:aa:00:01" }
		s.Session = "lab"
	})
	c1, c2 := approve(t, s, "52:54:00:aa:00:01"), approve(t, s, "52:54:00:aa:00:02")
	pub := newRegistration(t, "52:54:00:aa:00:01", "", "").req.Pub
	for name, c := range map[string]struct {
		cred Credential
		body string
		code int
	}{
		"bad json":             {c1, `{"mac":`, http.StatusBadRequest},
		"unknown field":        {c1, `{"mac":"52:54:00:aa:00:01","evil":1}`, http.StatusBadRequest},
		"bad mac":              {c1, `{"mac":"xx","session":"lab"}`, http.StatusBadRequest},
		"not allowed":          {c2, `{"mac":"52:54:00:aa:00:02","session":"lab","pub":"` + pub + `"}`, http.StatusUnauthorized},
		"wrong session":        {c1, `{"mac":"52:54:00:aa:00:01","session":"other","pub":"` + pub + `"}`, http.StatusConflict},
		"bad ip":               {c1, `{"mac":"52:54:00:aa:00:01","session":"lab","ip":"nope","pub":"` + pub + `"}`, http.StatusBadRequest},
		"bad port":             {c1, `{"mac":"52:54:00:aa:00:01","session":"lab","port":70000,"pub":"` + pub + `"}`, http.StatusBadRequest},
		"no answer key":        {c1, `{"mac":"52:54:00:aa:00:01","session":"lab"}`, http.StatusBadRequest},
		"bad answer key":       {c1, `{"mac":"52:54:00:aa:00:01","session":"lab","pub":"AAAA"}`, http.StatusBadRequest},
		"low-order answer key": {c1, `{"mac":"52:54:00:aa:00:01","session":"lab","pub":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`, http.StatusBadRequest},
		"other's key":          {c2, `{"mac":"52:54:00:aa:00:01","session":"lab","pub":"` + pub + `"}`, http.StatusUnauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			a := call(t, ts.URL, "POST", PathRegister, &c.cred, c.body, time.Time{})
			assert.Equal(t, c.code, a.code, a.body)
			assert.False(t, a.reply.OK)
			assert.NotEmpty(t, a.reply.Error)
			assert.Empty(t, a.reply.Answer)
		})
	}
	for _, m := range listAs(t, ts.URL, operator()) {
		assert.Equal(t, state.New, m.State, "refused registrations change nothing")
		assert.False(t, m.KeyUsed, "and spend no key")
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// rawGet sends the path exactly as given, without client-side cleaning.
func rawGet(t *testing.T, addr, path string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + "\n" + string(b)
}

func TestFilesAndEscapes(t *testing.T) {
	ts, _, _ := setup(t, nil)
	code, body := get(t, ts.URL+"/vmlinuz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "kernel-bytes", body)

	code, _ = get(t, ts.URL+"/escape")
	assert.Equal(t, http.StatusNotFound, code)
	addr := strings.TrimPrefix(ts.URL, "http://")
	for _, p := range []string{"/../secret", "/%2e%2e/secret", "/..%2fsecret", "/escape", "/./../secret"} {
		out := rawGet(t, addr, p)
		assert.NotContains(t, out, "top secret", p)
	}
}

func TestIPXEScripts(t *testing.T) {
	ts, s, _ := setup(t, nil)
	code, body := get(t, ts.URL+PathChain)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, bootcfg.IPXEChain(ts.URL), body)

	code, body = get(t, ts.URL+PathIPXE+"52-54-00-aa-00-01")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "kernel "+ts.URL+"/vmlinuz")

	_, err := s.Store.Register("52:54:00:aa:00:01", "10.0.0.1", 9998, "")
	require.NoError(t, err)
	_, err = s.Store.Report("52:54:00:aa:00:01", true, "", 1)
	require.NoError(t, err)
	_, err = s.Store.MarkLocal("52:54:00:aa:00:01")
	require.NoError(t, err)
	_, body = get(t, ts.URL+PathIPXE+"52:54:00:aa:00:01")
	assert.Equal(t, bootcfg.IPXELocal(), body)

	code, _ = get(t, ts.URL+PathIPXE+"garbage")
	assert.Equal(t, http.StatusNotFound, code)
}

func FuzzRegister(f *testing.F) {
	f.Add([]byte(`{"mac":"52:54:00:aa:00:01","ip":"10.9.0.101","port":9998,"session":"lab","pub":"3q2+7w=="}`))
	f.Add([]byte(`{"mac":"52-54-00-AA-00-01"}`))
	f.Add([]byte(`{"mac":"52:54:00:aa:00:01","port":-1}`))
	st, err := state.Open("")
	if err != nil {
		f.Fatal(err)
	}
	m, err := st.Add("52:54:00:aa:00:01", "")
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{Dir: f.TempDir(), Store: st, Key: testKey}
	h := s.Handler()
	agent := Credential{Role: RoleAgent, Key: AgentKey(testKey, m.MAC, m.KeyID)}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, c := range []*Credential{nil, &agent} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", PathRegister, bytes.NewReader(body))
			if c != nil {
				Sign(req, *c, body, time.Now())
			}
			h.ServeHTTP(rec, req)
			var r Reply
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatalf("answer is not JSON: %q", rec.Body.String())
			}
			if r.OK != (rec.Code == http.StatusOK) || r.OK != (r.Answer != "") {
				t.Fatalf("code %d with ok=%v answer %q", rec.Code, r.OK, r.Answer)
			}
			if c == nil && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusBadRequest {
				t.Fatalf("unsigned registration answered %d", rec.Code)
			}
		}
	})
}

func TestOneMachine(t *testing.T) {
	ts, s, _ := setup(t, nil)
	a := call(t, ts.URL, "GET", PathMachines+"/52:54:00:aa:00:09", operator(), "", time.Time{})
	assert.Equal(t, http.StatusNotFound, a.code, "an unknown machine, to the operator")

	agent := approve(t, s, "52:54:00:aa:00:09")
	other := approve(t, s, "52:54:00:aa:00:0a")
	a, creds := register(t, ts.URL, agent, newRegistration(t, "52:54:00:aa:00:09", "10.9.0.109", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	_, otherCreds := register(t, ts.URL, other, newRegistration(t, "52:54:00:aa:00:0a", "10.9.0.110", ""))

	for name, c := range map[string]*Credential{"its own machine key": machineOf(creds), "the operator": operator()} {
		a = call(t, ts.URL, "GET", PathMachines+"/52-54-00-AA-00-09", c, "", time.Time{})
		require.Equal(t, http.StatusOK, a.code, name)
		var m state.Machine
		require.NoError(t, json.Unmarshal([]byte(a.body), &m))
		assert.Equal(t, "52:54:00:aa:00:09", m.MAC)
		assert.Equal(t, state.Cloning, m.State)
		assert.Equal(t, "10.9.0.109", m.IP)
	}
	for name, c := range map[string]*Credential{"unsigned": nil, "another machine's key": machineOf(otherCreds), "its spent agent key": &agent} {
		a = call(t, ts.URL, "GET", PathMachines+"/52:54:00:aa:00:09", c, "", time.Time{})
		assert.Equal(t, http.StatusUnauthorized, a.code, name)
		assert.NotContains(t, a.body, "10.9.0.109", name)
	}
	a = call(t, ts.URL, "GET", PathMachines+"/52:54:00:aa:00:99", machineOf(creds), "", time.Time{})
	assert.Equal(t, http.StatusUnauthorized, a.code, "an agent does not learn which other MACs exist")
}

func TestStage2RegisterAndReport(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:02:01"
	agent := approve(t, s, mac)
	a := call(t, ts.URL, "POST", PathRegister, &agent, `{"mac":"52:54:00:aa:02:01","ip":"10.9.0.1","port":9998,"step":"warp","pub":"`+newRegistration(t, mac, "", "").req.Pub+`"}`, time.Time{})
	assert.Equal(t, http.StatusBadRequest, a.code, "unknown step")
	a, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.1", state.StepStage2))
	require.Equal(t, http.StatusOK, a.code, a.body)
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.StepStage2, m.Step)
	mk := machineOf(creds)
	a = call(t, ts.URL, "POST", PathReport, mk, `{"mac":"52:54:00:aa:02:01","ok":true,"bytes":9}`, time.Time{})
	assert.Equal(t, http.StatusConflict, a.code, "an image report while waiting for the stage 2")
	a = call(t, ts.URL, "POST", PathReport, mk, `{"mac":"52:54:00:aa:02:01","ok":true,"bytes":9,"step":"stage2"}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	m, _ = s.Store.Get(mac)
	assert.Equal(t, state.Cloning, m.State)
	assert.Equal(t, state.StepStage2Received, m.Step)
	a = call(t, ts.URL, "POST", PathReport, mk, `{"mac":"52:54:00:aa:02:01","ok":true,"bytes":9,"step":"nope"}`, time.Time{})
	assert.Equal(t, http.StatusBadRequest, a.code)
}

func TestStage2ReRegistersWithTheMachineKey(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:02:02"
	agent := approve(t, s, mac)
	_, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.2", state.StepStage2))
	mk := machineOf(creds)
	a, _ := register(t, ts.URL, *mk, newRegistration(t, mac, "10.9.0.2", ""))
	assert.Equal(t, http.StatusConflict, a.code, "not before its stage 2 arrived")
	a = call(t, ts.URL, "POST", PathReport, mk, `{"mac":"52:54:00:aa:02:02","ok":true,"bytes":9,"step":"stage2"}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	a, again := register(t, ts.URL, *mk, newRegistration(t, mac, "10.9.0.2", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	assert.Equal(t, testKey, again.ChainKey)
	assert.Equal(t, creds.MachineKey, again.MachineKey)
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.Cloning, m.State)
	assert.Equal(t, "", m.Step)
	assert.Empty(t, m.Alarm)
	a = call(t, ts.URL, "POST", PathReport, mk, `{"mac":"52:54:00:aa:02:02","ok":true,"bytes":99}`, time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	m, _ = s.Store.Get(mac)
	assert.Equal(t, state.Done, m.State)
}

// A failure's report carries the kernel log's tail, which the server
// keeps (bounded, cleaned) with the machine until it registers again.
func TestReportKeepsTheLogOfAFailure(t *testing.T) {
	ts, s, _ := setup(t, nil)
	const mac = "52:54:00:aa:03:01"
	agent := approve(t, s, mac)
	a, creds := register(t, ts.URL, agent, newRegistration(t, mac, "10.9.0.3", ""))
	require.Equal(t, http.StatusOK, a.code, a.body)
	lines := make([]string, 0, 50)
	for i := 0; i < 50; i++ {
		lines = append(lines, fmt.Sprintf("[%d.0] line %d", i, i))
	}
	lines[49] = "ata1: COMRESET failed\x1b[31m" + strings.Repeat("x", 400)
	body, _ := json.Marshal(ReportRequest{MAC: mac, OK: false, Error: "disk error", Log: lines})
	a = call(t, ts.URL, "POST", PathReport, machineOf(creds), string(body), time.Time{})
	require.Equal(t, http.StatusOK, a.code, a.body)
	m, _ := s.Store.Get(mac)
	assert.Equal(t, state.Failed, m.State)
	require.Len(t, m.Log, state.MaxLogLines)
	assert.Equal(t, "[10.0] line 10", m.Log[0], "the tail is kept")
	assert.Equal(t, "ata1: COMRESET failed?[31m", m.Log[39][:26], "control characters replaced")
	assert.Len(t, m.Log[39], state.MaxLogLine)
}

// Count hears of every request once, by outcome.
func TestCount(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	ts, _, _ := setup(t, func(s *Server) {
		s.Count = func(service, outcome string) {
			mu.Lock()
			counts[service+" "+outcome]++
			mu.Unlock()
		}
	})
	for _, p := range []string{"/vmlinuz", "/vmlinuz", "/missing", "/escape"} {
		get(t, ts.URL+p)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"http ok": 2, "http error": 2}, counts)
}
