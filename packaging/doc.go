// Package packaging holds no code: it is the folder of what ships herd as
// a service (systemd units, the sample /etc/herd/herd.yaml, the scripts
// behind make deb) and of the tests that build the Debian package,
// install it into a throwaway root, run the installed herd, verify its
// units with systemd-analyze and remove it again.
package packaging
