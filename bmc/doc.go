// Package bmc powers machines on and off and sets what they boot from
// next, through their baseboard management controllers: IPMI over LAN
// (RMCP+, run through ipmitool) and Redfish (HTTPS and JSON, spoken
// here). herd deploy uses it to make every machine PXE boot once at the
// start of a deploy and boot its disk after a verified clone; herd
// power is a thin command over it.
//
// A BMC is named by an address:
//
//	ipmi://10.0.0.201          IPMI over LAN, port 623
//	ipmi://bmc-node01:6230     another port
//	redfish://10.0.0.201       Redfish over HTTPS, the one system the BMC has
//	redfish://10.0.0.201/redfish/v1/Systems/1   one system of several
//
// and reached with a credentials file (see ParseCredentials): a user, a
// password and, for Redfish, the CA that signed the BMC's certificate.
// The file must not be readable by group or others.
//
// Open returns a Controller for an address and its credentials. Every
// call is bounded by its context; nothing a BMC answers costs more than
// MaxResponse bytes to read.
package bmc
