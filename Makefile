# Build, install and try swift-passt.
#
# One executable serves both modes: argv[0] picks passt or pasta, so `install` puts the passt
# binary in bin/ and makes bin/pasta a symbolic link to it, as upstream's packages do. SwiftPM
# builds into $(SCRATCH) (default .build, SwiftPM's own default); `static` builds a fully static
# binary into $(SCRATCH)-static, so the two builds never overwrite each other. `install` copies
# from $(PRODUCTS) and builds nothing (run `make` first; `make install PRODUCTS=.build-static/release`
# installs the static binary), so it can run as root without leaving root-owned build files, and
# `uninstall` removes exactly the four paths `install` creates.

SWIFT ?= $(shell command -v swift || echo /opt/swift/usr/bin/swift)
SCRATCH ?= .build
STATIC_SCRATCH ?= $(SCRATCH)-static
PRODUCTS ?= $(SCRATCH)/release
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
MANDIR = $(DESTDIR)$(PREFIX)/share/man/man1
# The demo needs root: use sudo unless we are root already.
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build static install uninstall demo test

all: build

build:
	$(SWIFT) build -c release --scratch-path $(SCRATCH)

static:
	$(SWIFT) build -c release --scratch-path $(STATIC_SCRATCH) --static-swift-stdlib \
		-Xswiftc -static-executable --product passt
	file $(STATIC_SCRATCH)/release/passt
	file $(STATIC_SCRATCH)/release/passt | grep -q 'statically linked'
	! ldd $(STATIC_SCRATCH)/release/passt

install:
	@test -x $(PRODUCTS)/passt || { echo "$(PRODUCTS)/passt not built: run make first" >&2; exit 1; }
	install -d $(BINDIR) $(MANDIR)
	install -m 755 $(PRODUCTS)/passt $(BINDIR)/passt
	ln -sf passt $(BINDIR)/pasta
	install -m 644 doc/passt.1 doc/pasta.1 $(MANDIR)/

uninstall:
	rm -f $(BINDIR)/passt $(BINDIR)/pasta $(MANDIR)/passt.1 $(MANDIR)/pasta.1

demo: build
	$(SUDO) env BIN=$(PRODUCTS) ./scripts/demo.sh

test:
	SCRATCH=$(SCRATCH) ./scripts/test.sh
