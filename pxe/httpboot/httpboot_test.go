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
	"testing"

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
	s := &Server{Dir: dir, Store: st, Script: func(mac, base string) string {
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

func post(t *testing.T, url string, body string) (int, Reply) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var r Reply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	return resp.StatusCode, r
}

func machines(t *testing.T, base string) []state.Machine {
	t.Helper()
	resp, err := http.Get(base + PathMachines)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var ms []state.Machine
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ms))
	return ms
}

func TestRegisterReportRoundTrip(t *testing.T) {
	ts, _, statePath := setup(t, nil)
	code, r := post(t, ts.URL+PathRegister, `{"mac":"52:54:00:AA:00:01","ip":"10.9.0.101","port":9998,"session":"lab"}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	assert.True(t, r.OK)
	code, r = post(t, ts.URL+PathRegister, `{"mac":"52:54:00:aa:00:02","port":9998,"session":"lab"}`)
	require.Equal(t, http.StatusOK, code, r.Error)

	ms := machines(t, ts.URL)
	require.Len(t, ms, 2)
	assert.Equal(t, state.Cloning, ms[0].State)
	assert.Equal(t, "10.9.0.101", ms[0].IP)
	assert.Equal(t, "127.0.0.1", ms[1].IP, "IP defaults to the caller's address")

	code, r = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:00:01","ok":true,"error":"","bytes":4096}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	code, r = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:00:02","ok":false,"error":"disk /dev/vda not found","bytes":0}`)
	require.Equal(t, http.StatusOK, code, r.Error)

	ms = machines(t, ts.URL)
	assert.Equal(t, state.Done, ms[0].State)
	assert.EqualValues(t, 4096, ms[0].Bytes)
	assert.Equal(t, state.Failed, ms[1].State)
	assert.Equal(t, "disk /dev/vda not found", ms[1].Reason)
	assert.False(t, ms[1].Updated.IsZero())

	// A second report for a machine that is no longer cloning conflicts.
	code, r = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:00:01","ok":true}`)
	assert.Equal(t, http.StatusConflict, code)
	assert.False(t, r.OK)
	code, _ = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:00:09","ok":true}`)
	assert.Equal(t, http.StatusNotFound, code)

	// The state survives in the file.
	st, err := state.Open(statePath)
	require.NoError(t, err)
	m, ok := st.Get("52:54:00:aa:00:02")
	require.True(t, ok)
	assert.Equal(t, state.Failed, m.State)
}

func TestOperatorSet(t *testing.T) {
	ts, _, _ := setup(t, nil)
	code, r := post(t, ts.URL+PathMachines+"/52-54-00-aa-00-07", `{"state":"local"}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	ms := machines(t, ts.URL)
	require.Len(t, ms, 1)
	assert.Equal(t, "52:54:00:aa:00:07", ms[0].MAC)
	assert.Equal(t, state.Local, ms[0].State)
	_, body := get(t, ts.URL+PathIPXE+"52:54:00:aa:00:07")
	assert.Equal(t, bootcfg.IPXELocal(), body)

	code, _ = post(t, ts.URL+PathMachines+"/52-54-00-aa-00-07", `{"state":"zombie"}`)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = post(t, ts.URL+PathMachines+"/nope", `{"state":"new"}`)
	assert.Equal(t, http.StatusBadRequest, code)
}

func TestRegisterRefusals(t *testing.T) {
	ts, _, _ := setup(t, func(s *Server) {
		s.Allow = func(mac string) bool { return mac == "52:54:00:aa:00:01" }
		s.Session = "lab"
	})
	for name, c := range map[string]struct {
		body string
		code int
	}{
		"bad json":      {`{"mac":`, http.StatusBadRequest},
		"unknown field": {`{"mac":"52:54:00:aa:00:01","evil":1}`, http.StatusBadRequest},
		"bad mac":       {`{"mac":"xx","session":"lab"}`, http.StatusBadRequest},
		"not allowed":   {`{"mac":"52:54:00:aa:00:02","session":"lab"}`, http.StatusForbidden},
		"wrong session": {`{"mac":"52:54:00:aa:00:01","session":"other"}`, http.StatusConflict},
		"bad ip":        {`{"mac":"52:54:00:aa:00:01","session":"lab","ip":"nope"}`, http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			code, r := post(t, ts.URL+PathRegister, c.body)
			assert.Equal(t, c.code, code)
			assert.False(t, r.OK)
			assert.NotEmpty(t, r.Error)
		})
	}
	assert.Empty(t, machines(t, ts.URL))
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
	f.Add([]byte(`{"mac":"52:54:00:aa:00:01","ip":"10.9.0.101","port":9998,"session":"lab"}`))
	f.Add([]byte(`{"mac":"52-54-00-AA-00-01"}`))
	f.Add([]byte(`{"mac":"52:54:00:aa:00:01","port":-1}`))
	st, err := state.Open("")
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{Dir: f.TempDir(), Store: st}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", PathRegister, bytes.NewReader(body)))
		var r Reply
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("answer is not JSON: %q", rec.Body.String())
		}
		if r.OK != (rec.Code == http.StatusOK) {
			t.Fatalf("code %d with ok=%v", rec.Code, r.OK)
		}
	})
}

func TestOneMachine(t *testing.T) {
	ts, _, _ := setup(t, nil)
	resp, err := http.Get(ts.URL + PathMachines + "/52:54:00:aa:00:09")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "an unknown machine")

	code, r := post(t, ts.URL+PathRegister, `{"mac":"52:54:00:aa:00:09","ip":"10.9.0.109","port":9998,"session":"lab"}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	resp, err = http.Get(ts.URL + PathMachines + "/52-54-00-AA-00-09")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var m state.Machine
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	assert.Equal(t, "52:54:00:aa:00:09", m.MAC)
	assert.Equal(t, state.Cloning, m.State)
	assert.Equal(t, "10.9.0.109", m.IP)
}

func TestStage2RegisterAndReport(t *testing.T) {
	ts, s, _ := setup(t, nil)
	code, r := post(t, ts.URL+PathRegister, `{"mac":"52:54:00:aa:02:01","ip":"10.9.0.1","port":9998,"step":"stage2"}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	m, _ := s.Store.Get("52:54:00:aa:02:01")
	assert.Equal(t, state.StepStage2, m.Step)
	code, _ = post(t, ts.URL+PathRegister, `{"mac":"52:54:00:aa:02:02","ip":"10.9.0.2","port":9998,"step":"warp"}`)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:02:01","ok":true,"bytes":9}`)
	assert.Equal(t, http.StatusConflict, code, "an image report while waiting for the stage 2")
	code, r = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:02:01","ok":true,"bytes":9,"step":"stage2"}`)
	require.Equal(t, http.StatusOK, code, r.Error)
	m, _ = s.Store.Get("52:54:00:aa:02:01")
	assert.Equal(t, state.Cloning, m.State)
	assert.Equal(t, state.StepStage2Received, m.Step)
	code, _ = post(t, ts.URL+PathReport, `{"mac":"52:54:00:aa:02:01","ok":true,"bytes":9,"step":"nope"}`)
	assert.Equal(t, http.StatusBadRequest, code)
}
