# herd: build, test and demo targets. `make test` is what CI runs.
GO      ?= go
BIN     := bin/herd
# Debian packages herd's tests, demo and benchmarks use. `make deps`
# installs the missing ones and is silent when all are present.
DEBS := fdisk e2fsprogs xfsprogs dosfstools zstd ncompress cpio tar gzip \
	nftables iproute2 udpcast busybox-static qemu-system-x86 ipxe-qemu ipxe \
	pxelinux syslinux-common extlinux partclone iputils-ping gnuplot-nox psmisc \
	util-linux kmod ovmf shim-signed grub-efi-amd64-signed mtools \
	openipmi ipmitool chromium

# Packages whose tests also run under the race detector (concurrent code).
RACE_PKGS := ./ring/... ./blockdev/... ./pxe/deploy/... ./bmc/...

.PHONY: all deps build test e2e bench demo fmt vet fuzz clean
all: build

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

build:
	$(GO) build -o $(BIN) ./cmd/herd

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
