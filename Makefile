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
$(1)/tests/%.o: tests/%.c $(wildcard tests/lib/*.h) engine/*.h
	@mkdir -p $$(@D)
	$$(CC) $$(WARN) $$(OPT) $(2) $$(PKG_CFLAGS) -Iengine -Itests/lib -c $$< -o $$@
$(1)/libsbfs.a: $(patsubst %.c,$(1)/%.o,$(ENGINE_SRC))
	rm -f $$@ && ar rcs $$@ $$^
$(1)/sbfs: $(patsubst %.c,$(1)/%.o,$(FS_SRC)) $(1)/libsbfs.a
	$$(CC) $(2) -o $$@ $$^ $$(PKG_LIBS) -lpthread
$(1)/tests/%: $(1)/tests/%.o $(patsubst %.c,$(1)/%.o,$(TEST_HELP)) $(1)/libsbfs.a
	$$(CC) $(2) -o $$@ $$^ $$(PKG_LIBS) $$(CRIT_LIBS) -lpthread
endef

$(eval $(call variant,build,))
$(eval $(call variant,build-san,$(SAN)))

TESTS     := $(patsubst %.c,build/%,$(TEST_SRC))
TESTS_SAN := $(patsubst %.c,build-san/%,$(TEST_SRC))

.PHONY: all test test-plain test-san demo bench clean deps
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

clean:
	rm -rf build build-san
