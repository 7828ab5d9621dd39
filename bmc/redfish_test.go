package bmc

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/herd-cluster/herd/bmc/bmctest"
)

// startRedfish serves f (user admin, password "s3cret pass=") over TLS
// and returns its address and a credentials file with password.
func startRedfish(t *testing.T, f *bmctest.Redfish, password string) (Addr, string) {
	t.Helper()
	f.User, f.Password = "admin", "s3cret pass="
	addr, cred := f.Start(t, t.TempDir(), password)
	a, err := ParseAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	return a, cred
}

func openRedfish(t *testing.T, a Addr, cred string) Controller {
	t.Helper()
	c, err := LoadCredentials(cred)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := Open(a, c)
	if err != nil {
		t.Fatal(err)
	}
	return ctl
}

func TestRedfishPowerAndBoot(t *testing.T) {
	f := &bmctest.Redfish{Power: "Off", Allowed: []string{"On", "ForceOff", "ForceRestart", "PowerCycle"}}
	a, cred := startRedfish(t, f, "s3cret pass=")
	ctl := openRedfish(t, a, cred)
	ctx := context.Background()

	if st, err := ctl.State(ctx); err != nil || st != Off {
		t.Fatalf("state = %v, %v; want off", st, err)
	}
	if err := ctl.SetBoot(ctx, Boot{Device: PXE, EFI: true}); err != nil {
		t.Fatal(err)
	}
	if f.Target != "Pxe" || f.Enabled != "Once" || f.Mode != "UEFI" {
		t.Fatalf("boot override = %s %s %s", f.Target, f.Enabled, f.Mode)
	}
	// A cycle of a machine that is off powers it on.
	if err := ctl.Power(ctx, PowerCycle); err != nil {
		t.Fatal(err)
	}
	if st, err := ctl.State(ctx); err != nil || st != On {
		t.Fatalf("state = %v, %v; want on", st, err)
	}
	// Of one that is on, a power cycle where offered.
	if err := ctl.Power(ctx, PowerCycle); err != nil {
		t.Fatal(err)
	}
	// The second PATCH carries the new ETag.
	if err := ctl.SetBoot(ctx, Boot{Device: Disk, Persistent: true}); err != nil {
		t.Fatal(err)
	}
	if f.Target != "Hdd" || f.Enabled != "Continuous" || f.Mode != "" {
		t.Fatalf("boot override = %s %s %s", f.Target, f.Enabled, f.Mode)
	}
	// On when on is nothing to do.
	if err := ctl.Power(ctx, PowerOn); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Power(ctx, PowerOff); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Resets, ","); got != "On,PowerCycle,ForceOff" {
		t.Fatalf("resets = %s", got)
	}
}

func TestRedfishRestartWhenNoPowerCycle(t *testing.T) {
	f := &bmctest.Redfish{Power: "On", Allowed: []string{"On", "ForceOff", "ForceRestart"}}
	a, cred := startRedfish(t, f, "s3cret pass=")
	if err := openRedfish(t, a, cred).Power(context.Background(), PowerCycle); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Resets, ","); got != "ForceRestart" {
		t.Fatalf("resets = %s", got)
	}
}

func TestRedfishErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("wrong password", func(t *testing.T) {
		f := &bmctest.Redfish{Power: "On"}
		a, cred := startRedfish(t, f, "wrong")
		_, err := openRedfish(t, a, cred).State(ctx)
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "credentials included with this request are missing or invalid") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("several systems", func(t *testing.T) {
		f := &bmctest.Redfish{Power: "On", Systems: 2}
		a, cred := startRedfish(t, f, "s3cret pass=")
		_, err := openRedfish(t, a, cred).State(ctx)
		if err == nil || !strings.Contains(err.Error(), "2 systems") || !strings.Contains(err.Error(), "/redfish/v1/Systems/2") {
			t.Fatalf("err = %v", err)
		}
		// Named in the address, it works.
		a.System = "/redfish/v1/Systems/1"
		if st, err := openRedfish(t, a, cred).State(ctx); err != nil || st != On {
			t.Fatalf("state = %v, %v", st, err)
		}
	})
	t.Run("reset type not offered", func(t *testing.T) {
		f := &bmctest.Redfish{Power: "On", Allowed: []string{"On"}}
		a, cred := startRedfish(t, f, "s3cret pass=")
		err := openRedfish(t, a, cred).Power(ctx, PowerOff)
		if err == nil || !strings.Contains(err.Error(), "ForceOff not offered") {
			t.Fatalf("err = %v", err)
		}
		if len(f.Resets) != 0 {
			t.Fatalf("resets = %v", f.Resets)
		}
	})
	t.Run("certificate not trusted", func(t *testing.T) {
		f := &bmctest.Redfish{Power: "On"}
		a, _ := startRedfish(t, f, "s3cret pass=")
		cred := filepath.Join(t.TempDir(), "c")
		os.WriteFile(cred, []byte("user=admin\npassword=s3cret pass=\n"), 0o600)
		_, err := openRedfish(t, a, cred).State(ctx)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v", err)
		}
		if len(f.Requests) != 0 {
			t.Fatalf("the BMC got %v", f.Requests)
		}
		// Only when the credentials file says so is it not checked.
		os.WriteFile(cred, []byte("user=admin\npassword=s3cret pass=\ninsecure-tls=yes\n"), 0o600)
		if _, err := openRedfish(t, a, cred).State(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// A BMC that answers with a redirect, a huge body or nonsense gets an
// error, not the password elsewhere or a ballooned herd.
func TestRedfishHostileAnswers(t *testing.T) {
	var mode string
	var elsewhere int
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere++ }))
	defer other.Close()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode {
		case "redirect":
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		case "huge":
			w.Write([]byte(`{"Members":[`))
			for i := 0; i < MaxResponse/16; i++ {
				w.Write([]byte(`{"@odata.id":"x"},`))
			}
		case "nonsense":
			w.Write([]byte(`<html>hello</html>`))
		case "bad target":
			if r.URL.Path == "/redfish/v1/Systems" {
				w.Write([]byte(`{"Members":[{"@odata.id":"/redfish/v1/Systems/1"}]}`))
				return
			}
			w.Write([]byte(`{"PowerState":"On","Actions":{"#ComputerSystem.Reset":{"target":"http://evil/x"}}}`))
		case "bad system":
			w.Write([]byte(`{"Members":[{"@odata.id":"/../../etc"}]}`))
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	p, _ := strconv.Atoi(port)
	ctl, err := Open(Addr{Protocol: Redfish, Host: host, Port: p}, Credentials{User: "u", Password: "p", InsecureTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ mode, want string }{
		{"redirect", "redirect refused"},
		{"huge", "larger than"},
		{"nonsense", "not understood"},
		{"bad system", "not understood"},
		{"bad target", "refused"},
	} {
		mode = tc.mode
		ctl.(*redfishBMC).system = ""
		var err error
		if tc.mode == "bad target" {
			err = ctl.Power(context.Background(), PowerOff)
		} else {
			_, err = ctl.State(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.mode, err, tc.want)
		}
	}
	if elsewhere != 0 {
		t.Fatal("the redirect was followed")
	}
}
