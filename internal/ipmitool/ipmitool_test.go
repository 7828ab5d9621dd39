package ipmitool

import "testing"

func TestFailed(t *testing.T) {
	for in, want := range map[string]bool{
		"Set Chassis Boot Parameter 5 failed: Unspecified error\n": true,
		"Error: Unable to establish IPMI v2 / RMCP+ session\n":     true,
		"Unable to Get Channel Cipher Suites\n":                    true,
		"  error in response\n":                                    true,
		"SEL has no entries\n":                                     false,
		"":                                                         false,
		"Chassis Power Control: Cycle\n":                           false,
	} {
		if got := Failed(in); got != want {
			t.Errorf("Failed(%q) = %v, want %v", in, got, want)
		}
	}
}
