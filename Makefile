# herd: build, test and demo targets. `make test` is what CI runs.
GO      ?= go
BIN     := bin/herd
# Debian packages herd's tests, demo and benchmarks use. `make deps`
# installs the missing ones and is silent when all are present.
DEBS := fdisk e2fsprogs xfsprogs dosfstools zstd ncompress cpio tar gzip \
	nftables iproute2 udpcast busybox-static qemu-system-x86 ipxe-qemu ipxe \
	pxelinux syslinux-common extlinux partclone iputils-ping gnuplot-nox psmisc \
	util-linux kmod ovmf shim-signed grub-efi-amd64-signed mtools \
	openipmi ipmitool chromium \
	groff-base mandoc systemd

# Packages whose tests also run under the race detector (concurrent code).
RACE_PKGS := ./ring/... ./blockdev/... ./pxe/deploy/... ./bmc/...

.PHONY: all deps build test e2e bench demo fmt vet fuzz clean install uninstall deb help
all: build

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# What the binary says it is (herd --version): git describe, the commit
# (-dirty with uncommitted changes) and its time, set at link time because
# the Go toolchain stamps no VCS data with -buildvcs=false or in a git
# worktree. Empty outside git: herd then reports what Go recorded.
VERSION     := $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT      := $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null && echo $$c || echo $$c-dirty; })
COMMIT_TIME := $(shell TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.commitTime=$(COMMIT_TIME)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/herd

# make install: the binary, man pages, completions, systemd units and the
# sample /etc/herd/herd.yaml (an existing one is kept). PREFIX=/usr/local
# by default; DESTDIR stages the whole tree elsewhere.
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/herd
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/share/zsh/vendor-completions,$(PREFIX)/share/zsh/site-functions)
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
UNITS       := herd-pxe.service herd-recv@.service
GEN         := bin/gen

install: build
	rm -rf $(GEN) && mkdir -p $(GEN)/man1
	$(BIN) gen man $(GEN)/man1
	gzip -9n $(GEN)/man1/*.1
	for sh in bash zsh fish; do $(BIN) gen completion $$sh >$(GEN)/herd.$$sh || exit 1; done
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/herd
	install -d $(DESTDIR)$(MANDIR)/man1 && install -m 0644 $(GEN)/man1/*.1.gz $(DESTDIR)$(MANDIR)/man1/
	install -D -m 0644 $(GEN)/herd.bash $(DESTDIR)$(BASHCOMPDIR)/herd
	install -D -m 0644 $(GEN)/herd.zsh $(DESTDIR)$(ZSHCOMPDIR)/_herd
	install -D -m 0644 $(GEN)/herd.fish $(DESTDIR)$(FISHCOMPDIR)/herd.fish
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do sed 's|@BINDIR@|$(BINDIR)|g' packaging/systemd/$$u >$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	install -D -m 0644 packaging/systemd/recv.env $(DESTDIR)$(DOCDIR)/examples/recv.env
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/herd/herd.yaml ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/herd/herd.yaml (the new sample is $(DESTDIR)$(DOCDIR)/examples/herd.yaml)"; \
	else \
		install -D -m 0644 packaging/herd.yaml $(DESTDIR)$(SYSCONFDIR)/herd/herd.yaml; \
	fi
	install -D -m 0644 packaging/herd.yaml $(DESTDIR)$(DOCDIR)/examples/herd.yaml

# make uninstall removes what make install put, but /etc/herd.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/herd $(DESTDIR)$(MANDIR)/man1/herd.1.gz $(DESTDIR)$(MANDIR)/man1/herd-*.1.gz \
		$(DESTDIR)$(BASHCOMPDIR)/herd $(DESTDIR)$(ZSHCOMPDIR)/_herd $(DESTDIR)$(FISHCOMPDIR)/herd.fish \
		$(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -rf $(DESTDIR)$(DOCDIR)

# make deb: bin/herd_VERSION_ARCH.deb, the same tree under /usr, its
# /etc/herd/herd.yaml a conffile (packaging/mkdeb.sh).
DEB_VERSION := $(shell sh packaging/debversion.sh $(VERSION))
DEB_ARCH    := $(shell $(GO) env GOARCH)
DEB         := bin/herd_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_ROOT    := bin/deb-root
deb: build
	rm -rf $(DEB_ROOT)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr
	sh packaging/mkdeb.sh $(DEB_ROOT) $(DEB_VERSION) $(DEB_ARCH) $(DEB)
	rm -rf $(DEB_ROOT)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

test: deps build vet
	$(GO) test -race -timeout 20m $(RACE_PKGS)
	$(GO) test -timeout 60m ./...

e2e: deps build
	$(GO) test -timeout 60m -v ./e2e/...

# The lab benchmark (herd against udpcast and a naive copy, a fault run, a
# used-only run, the encryption cost), then herd to 8 processes over
# loopback against one copy, and keyed against --insecure over loopback.
bench: deps build
	$(GO) run ./bench -results results -herd $(CURDIR)/$(BIN)
	$(GO) test -timeout 10m -run '^$$' -bench 'LoopbackClone8|EncryptionCost' -benchtime 1x -v ./cmd/herd

# The soak of issue #13: ROUNDS rounds of 8-node lab clones with random
# faults and slow nodes under load (one busy loop per core), every node's
# own verdict beside the sender's; any disagreement fails. SEED=S replays
# from round seed S. Report in results/soak-SEED.txt.
ROUNDS ?= 50
SEED   ?= 0
.PHONY: soak
soak: deps build
	$(GO) run ./bench soak -rounds $(ROUNDS) -seed $(SEED) -results results -herd $(CURDIR)/$(BIN)

# The timing property test of issue #13 at length: SCHEDULES random
# schedules (pauses, stalls, jitter, crashes, rejoins, slow nodes) in the
# simulator, the invariants checked on each; failing seeds are written to
# ring/sim/testdata/found/. make test runs the first 300.
SCHEDULES ?= 10000
.PHONY: soak-sim
soak-sim:
	$(GO) test -timeout 60m -run 'TestRandomTimingFaults$$' -sim.timing=$(SCHEDULES) -v ./ring/sim

demo: deps build
	./scripts/demo.sh

fuzz:
	@echo "see README: go test -fuzz=FuzzX ./pkg"

clean:
	rm -rf bin results

help:
	@echo 'make deps       install the Debian packages herd'"'"'s tests, demo and packaging use'
	@echo 'make build      build bin/herd (version, commit and its time from git)'
	@echo 'make test       go vet, the race detector on concurrent packages, every test'
	@echo 'make e2e        only the end-to-end suites, verbose'
	@echo 'make bench      benchmarks against peers, results under results/'
	@echo 'make soak       verdicts under faults and load (ROUNDS=50 SEED=0)'
	@echo 'make soak-sim   the timing property test (SCHEDULES=10000)'
	@echo 'make demo       the Quick start demo'
	@echo 'make install    binary, man pages, completions, systemd units, /etc/herd/herd.yaml'
	@echo '                (PREFIX=/usr/local, DESTDIR=; an existing herd.yaml is kept)'
	@echo 'make uninstall  remove what make install put, but /etc/herd'
	@echo 'make deb        bin/herd_VERSION_ARCH.deb (dpkg-deb)'
	@echo 'make clean      remove bin/ and results/'
