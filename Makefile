# sbfs — see README.md. `make` builds, `make test` runs every test twice:
# a normal build and one with AddressSanitizer + UndefinedBehaviorSanitizer.

.DEFAULT_GOAL := all

CC      ?= gcc
PKGS    := fuse3 libcrypto lmdb
WARN    := -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
OPT     ?= -O2 -g
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CRIT_LIBS  := $(shell pkg-config --libs criterion 2>/dev/null)

ENGINE_SRC := $(sort $(wildcard engine/*.c))
FS_SRC     := $(sort $(wildcard fs/*.c))
TEST_SRC   := $(sort $(wildcard tests/engine/*.c tests/fs/*.c))
TEST_HELP  := $(sort $(wildcard tests/lib/*.c))

# $(1): build directory, $(2): extra flags
define variant
$(1)/engine/%.o: engine/%.c engine/*.h
	@mkdir -p $$(@D)
	$$(CC) $$(WARN) $$(OPT) $(2) $$(PKG_CFLAGS) -Iengine -c $$< -o $$@
$(1)/fs/%.o: fs/%.c $(wildcard fs/*.h) engine/sbfs.h engine/ignore.h
	@mkdir -p $$(@D)
	$$(CC) $$(WARN) $$(OPT) $(2) $$(PKG_CFLAGS) -Iengine -Ifs -c $$< -o $$@
$(1)/tests/%.o: tests/%.c $(wildcard tests/lib/*.h) engine/*.h fs/cli.h
	@mkdir -p $$(@D)
	$$(CC) $$(WARN) $$(OPT) $(2) $$(PKG_CFLAGS) -Iengine -Itests/lib -c $$< -o $$@
$(1)/libsbfs.a: $(patsubst %.c,$(1)/%.o,$(ENGINE_SRC))
	rm -f $$@ && ar rcs $$@ $$^
$(1)/sbfs: $(patsubst %.c,$(1)/%.o,$(FS_SRC)) $(1)/libsbfs.a
	$$(CC) $(2) -o $$@ $$^ $$(PKG_LIBS) -lpthread
$(1)/tests/%: $(1)/tests/%.o $(patsubst %.c,$(1)/%.o,$(TEST_HELP)) $(1)/libsbfs.a
	$$(CC) $(2) -o $$@ $$^ $$(PKG_LIBS) $$(CRIT_LIBS) -lpthread
# fs/syslog.c's repeat limiting is tested in process, on a clock the test sets
$(1)/tests/fs/test_daemon: $(1)/fs/syslog.o
endef

$(eval $(call variant,build,))
$(eval $(call variant,build-san,$(SAN)))

TESTS     := $(patsubst %.c,build/%,$(TEST_SRC))
TESTS_SAN := $(patsubst %.c,build-san/%,$(TEST_SRC))

# make install [PREFIX=/usr/local] [DESTDIR=...]. mount(8) finds the helper
# for type fuse.sbfs as /sbin/mount.fuse.sbfs, else runs mount.fuse3, which
# runs `sbfs` from a PATH of /usr/local/sbin:/usr/local/bin:/usr/sbin:...:
# so the default PREFIX needs no link outside it, and PREFIX=/usr gets
# /usr/sbin/mount.fuse.sbfs (= /sbin on a merged /usr).
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
COMPDIR ?= $(PREFIX)/share/bash-completion/completions
UNITDIR ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
DOCDIR  ?= $(PREFIX)/share/doc/sbfs

.PHONY: all test test-plain test-san demo bench clean deps install uninstall
.SECONDARY:

all: build/sbfs

deps:
	scripts/install-deps

test: build/sbfs build-san/sbfs $(TESTS) $(TESTS_SAN)
	scripts/run-tests build build-san

test-plain: build/sbfs $(TESTS)
	scripts/run-tests build

test-san: build-san/sbfs $(TESTS_SAN)
	scripts/run-tests build-san

demo: build/sbfs
	scripts/demo

bench: build/sbfs
	scripts/bench-reconcile

install: build/sbfs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPDIR)
	install -m 755 build/sbfs $(DESTDIR)$(BINDIR)/sbfs
	install -m 644 man/sbfs.1 $(DESTDIR)$(MANDIR)/man1/sbfs.1
	install -m 644 completion/sbfs.bash $(DESTDIR)$(COMPDIR)/sbfs
	ln -sf $(BINDIR)/sbfs $(DESTDIR)$(SBINDIR)/mount.fuse.sbfs
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(USERUNITDIR) $(DESTDIR)$(DOCDIR)/examples
	sed 's|@BINDIR@|$(BINDIR)|g' systemd/sbfs-mount@.service >$(DESTDIR)$(UNITDIR)/sbfs-mount@.service
	sed 's|@BINDIR@|$(BINDIR)|g' systemd/sbfs-mount@.service >$(DESTDIR)$(USERUNITDIR)/sbfs-mount@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/sbfs-mount@.service $(DESTDIR)$(USERUNITDIR)/sbfs-mount@.service
	install -m 644 systemd/mnt-sbfs.mount $(DESTDIR)$(DOCDIR)/examples/mnt-sbfs.mount

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sbfs $(DESTDIR)$(SBINDIR)/mount.fuse.sbfs \
	      $(DESTDIR)$(MANDIR)/man1/sbfs.1 $(DESTDIR)$(COMPDIR)/sbfs \
	      $(DESTDIR)$(UNITDIR)/sbfs-mount@.service $(DESTDIR)$(USERUNITDIR)/sbfs-mount@.service \
	      $(DESTDIR)$(DOCDIR)/examples/mnt-sbfs.mount
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null

clean:
	rm -rf build build-san
