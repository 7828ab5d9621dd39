// Package bmctest serves a stand-in for a BMC's Redfish service, for
// tests of herd's power control.
package bmctest

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
)

// Redfish answers like a BMC's Redfish service does, for the part
// herd uses: the Systems collection, one ComputerSystem with its
// PowerState, its Reset action (with the reset types it offers) and
// its Boot override, basic authentication, ETags that a PATCH must
// match (as some vendors' BMCs demand), and Redfish error bodies.
//
// It does not cover: sessions (X-Auth-Token), task monitors for long
// actions, vendor OEM extensions, chassis and managers, event
// subscriptions, nor the time a real BMC takes to power a machine
// (PowerState changes at once here). A real BMC's quirks beyond these
// are untested; docs/bmc.md says so.
//
// Its fields may be read once the requests of interest are answered
// (Lock guards them meanwhile).
type Redfish struct {
	// User and Password it accepts.
	User, Password string
	// Power is the system's PowerState ("On", "Off").
	Power string
	// Allowed are the reset types offered (nil: any, none listed).
	Allowed []string
	// Target, Enabled and Mode are its Boot override:
	// BootSourceOverrideTarget, …Enabled, …Mode.
	Target, Enabled, Mode string
	// Systems is how many systems the collection lists (default 1).
	Systems int
	// Resets are the reset types done, in order; Requests every
	// request's method and path.
	Resets, Requests []string

	mu   sync.Mutex
	etag int
}

// Lock and Unlock guard the fields while the server runs.
func (r *Redfish) Lock()   { r.mu.Lock() }
func (r *Redfish) Unlock() { r.mu.Unlock() }

func (r *Redfish) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Requests = append(r.Requests, req.Method+" "+req.URL.Path)
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"code": "Base.1.8.GeneralError", "message": "A general error has occurred.",
			"@Message.ExtendedInfo": []map[string]string{{"Message": msg}},
		}})
	}
	if u, p, ok := req.BasicAuth(); !ok || u != r.User || p != r.Password {
		fail(http.StatusUnauthorized, "The authentication credentials included with this request are missing or invalid.")
		return
	}
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", fmt.Sprintf(`W/"%d"`, r.etag))
		json.NewEncoder(w).Encode(v)
	}
	n := r.Systems
	if n == 0 {
		n = 1
	}
	switch {
	case req.Method == http.MethodGet && req.URL.Path == "/redfish/v1/Systems":
		var members []map[string]string
		for i := 1; i <= n; i++ {
			members = append(members, map[string]string{"@odata.id": "/redfish/v1/Systems/" + strconv.Itoa(i)})
		}
		reply(map[string]any{"Members": members, "Members@odata.count": n})
	case req.Method == http.MethodGet && req.URL.Path == "/redfish/v1/Systems/1":
		reset := map[string]any{"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}
		if r.Allowed != nil {
			reset["ResetType@Redfish.AllowableValues"] = r.Allowed
		}
		reply(map[string]any{
			"@odata.id": "/redfish/v1/Systems/1", "PowerState": r.Power,
			"Boot":    map[string]string{"BootSourceOverrideTarget": r.Target, "BootSourceOverrideEnabled": r.Enabled},
			"Actions": map[string]any{"#ComputerSystem.Reset": reset},
		})
	case req.Method == http.MethodPost && req.URL.Path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset":
		var body struct{ ResetType string }
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			fail(http.StatusBadRequest, "malformed JSON")
			return
		}
		if r.Allowed != nil && !slices.Contains(r.Allowed, body.ResetType) {
			fail(http.StatusBadRequest, "The value "+body.ResetType+" for the property ResetType is not in the list of acceptable values.")
			return
		}
		switch body.ResetType {
		case "On":
			if r.Power == "On" {
				fail(http.StatusConflict, "The system is already on.")
				return
			}
			r.Power = "On"
		case "ForceOff":
			r.Power = "Off"
		case "ForceRestart", "PowerCycle":
			if r.Power != "On" {
				fail(http.StatusConflict, "The system is off.")
				return
			}
		default:
			fail(http.StatusBadRequest, "unknown reset type")
			return
		}
		r.Resets = append(r.Resets, body.ResetType)
		w.WriteHeader(http.StatusNoContent)
	case req.Method == http.MethodPatch && req.URL.Path == "/redfish/v1/Systems/1":
		if req.Header.Get("If-Match") != fmt.Sprintf(`W/"%d"`, r.etag) {
			fail(http.StatusPreconditionFailed, "The ETag supplied did not match the ETag required to change this resource.")
			return
		}
		var body struct {
			Boot map[string]string
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.Boot == nil {
			fail(http.StatusBadRequest, "malformed JSON")
			return
		}
		r.Target, r.Enabled, r.Mode = body.Boot["BootSourceOverrideTarget"], body.Boot["BootSourceOverrideEnabled"], body.Boot["BootSourceOverrideMode"]
		r.etag++
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(http.StatusNotFound, "The resource at the URI "+req.URL.Path+" was not found.")
	}
}

// Start serves r over TLS until the test ends and returns its address
// (redfish://127.0.0.1:PORT) and a credentials file (mode 0600, in
// dir) with password that trusts its certificate.
func (r *Redfish) Start(t testing.TB, dir, password string) (addr, creds string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(r)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(dir, "redfish-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	creds = filepath.Join(dir, "redfish.cred")
	if err := os.WriteFile(creds, []byte("user="+r.User+"\npassword="+password+"\nca=redfish-ca.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "redfish://" + srv.Listener.Addr().String(), creds
}
