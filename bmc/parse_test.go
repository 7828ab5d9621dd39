package bmc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"ipmi://10.0.0.5":                          "ipmi://10.0.0.5:623",
		"ipmi://bmc-node01:6230":                   "ipmi://bmc-node01:6230",
		"redfish://10.0.0.5":                       "redfish://10.0.0.5:443",
		"https://bmc.example:8443/":                "redfish://bmc.example:8443",
		"redfish://[fd00::5]/redfish/v1/Systems/1": "redfish://[fd00::5]:443/redfish/v1/Systems/1",
		"ipmi://10.0.0.5?cipher=3":                 "ipmi://10.0.0.5:623?cipher=3",
	} {
		a, err := ParseAddr(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for _, in := range []string{
		"", "10.0.0.5", "http://10.0.0.5", "ipmi://", "ipmi://admin:pw@10.0.0.5", "ipmi://h:0", "ipmi://h:70000",
		"ipmi://h/x", "redfish://h/redfish/v1/Managers/1", "redfish://h/redfish/v1/Systems/1/../x", "ipmi://-oProxy=x",
		"ipmi://h?cipher=0", "ipmi://h?cipher=18", "ipmi://h?cipher=03", "ipmi://h?suite=3", "redfish://h?cipher=3",
		"ipmi://h#x", "redfish://h/redfish/v1/Systems/1/Bios",
	} {
		if _, err := ParseAddr(in); !errors.Is(err, ErrAddr) {
			t.Errorf("ParseAddr(%q) = %v, want ErrAddr", in, err)
		}
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"ipmi://10.0.0.5", "redfish://h:8443/redfish/v1/Systems/1", "https://[::1]/", "ipmi://a:b@c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			return
		}
		// What it accepts, it reads back the same.
		b, err := ParseAddr(a.String())
		if err != nil || b != a {
			t.Fatalf("%q → %v → %v, %v", s, a, b, err)
		}
		if strings.HasPrefix(a.Host, "-") {
			t.Fatalf("host %q could be read as an option", a.Host)
		}
	})
}

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials([]byte("# node01\nuser = admin\npassword=a b=c \n\nca=ca.pem\n"))
	if err != nil || c.User != "admin" || c.Password != "a b=c " || c.CA != "ca.pem" {
		t.Fatalf("%+v, %v", c, err)
	}
	for in, want := range map[string]string{
		"user=a\n":                                   "no password",
		"password=a\n":                               "no user",
		"user=a\npassword=b\nuser=c\n":               "line 3: user set again (first on line 1)",
		"user=a\nparole=b\n":                         `line 2: unknown key "parole"`,
		"user=a\npassword\n":                         "line 2: want KEY=VALUE",
		"user=a\npassword=b\ninsecure-tls=maybe\n":   "line 3: insecure-tls is yes or no",
		"user=a\npassword=b\nca=x\ninsecure-tls=yes": "together",
	} {
		_, err := ParseCredentials([]byte(in))
		if !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bmc.cred")
	os.WriteFile(p, []byte("user=admin\npassword=x\nca=sub/ca.pem\n"), 0o640)
	if _, err := LoadCredentials(p); !errors.Is(err, ErrCredentials) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v", err)
	}
	os.Chmod(p, 0o600)
	c, err := LoadCredentials(p)
	if err != nil || c.CA != filepath.Join(dir, "sub/ca.pem") || c.Path != p {
		t.Fatalf("%+v, %v", c, err)
	}
	if _, err := LoadCredentials(dir); !errors.Is(err, ErrCredentials) {
		t.Fatalf("a folder: err = %v", err)
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte("user=admin\npassword=x\n"))
	f.Add([]byte("user=a\npassword=b\nca=c\ninsecure-tls=no\n# x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCredentials(data)
		if err == nil && (c.User == "" || c.Password == "") {
			t.Fatalf("accepted without user or password: %+v", c)
		}
	})
}

func TestParseIPMIPower(t *testing.T) {
	for in, want := range map[string]PowerState{"Chassis Power is on\n": On, "Chassis Power is off": Off} {
		if st, err := parseIPMIPower(in); err != nil || st != want {
			t.Errorf("%q → %v, %v", in, st, err)
		}
	}
	if _, err := parseIPMIPower("Error: Unable to establish IPMI v2 / RMCP+ session"); err == nil {
		t.Fatal("no error")
	}
}

func FuzzParseIPMIPower(f *testing.F) {
	f.Add("Chassis Power is on\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parseIPMIPower(s)
		if err == nil && st != On && st != Off {
			t.Fatalf("state %q", st)
		}
	})
}

func FuzzRedfishError(f *testing.F) {
	f.Add([]byte(`{"error":{"message":"m","@Message.ExtendedInfo":[{"Message":"x"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if s := redfishError(data); len(s) > 300 {
			t.Fatalf("message of %d bytes", len(s))
		}
	})
}
