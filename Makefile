# cstore build. `make` builds libcstore.a, libcstore.so.0 and the tools into build/.
# `make test` and `make bench` install missing Debian packages first (tools/install-deps.sh).
# Sources are picked up by folder, so a new module needs no edit here.

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
SAN      ?=
SONAME    = libcstore.so.0
VERSION   = 0.1.0

WARN     = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -fPIC -D_GNU_SOURCE -Iinclude -Icommon -I. -MMD -MP
ifeq ($(SAN),address)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -DCS_NO_JEMALLOC -DCS_DEBUG
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SAN),thread)
# Concurrency Kit's default x86 atomics are inline assembly, invisible to ThreadSanitizer; its
# compiler-builtin variant is the same algorithm in atomics TSan understands.
CFLAGS  += -fsanitize=thread -DCS_NO_JEMALLOC -DCS_DEBUG -DCK_USE_CC_BUILTINS=1
LDFLAGS += -fsanitize=thread
endif
LDLIBS   = -luring -llz4 -lxxhash -linih -lck -lpthread -lm
ifeq ($(SAN),)
LDLIBS  += -ljemalloc
endif

LIB_SRC   := $(wildcard common/*.c io/*.c raft/*.c shards/*.c engine/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
INTEG_BIN := $(INTEG_SRC:tests/integration/%.c=$(BUILD)/tests/%)
SIM_SRC   := $(wildcard tests/sim/*.c)
TOOLS     := $(BUILD)/cstore $(BUILD)/cstore-bench $(if $(SIM_SRC),$(BUILD)/raft-sim)
TOOLS     += $(if $(wildcard tools/cstore_fault.c),$(BUILD)/cstore-fault)

.PHONY: all deps lib tools test test-unit test-long asan tsan bench install clean format

all: deps lib tools

deps:
	@sh tools/install-deps.sh

lib: $(BUILD)/libcstore.a $(BUILD)/$(SONAME)

tools: $(TOOLS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcstore.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/$(SONAME): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LDLIBS)
	ln -sf $(SONAME) $(BUILD)/libcstore.so

$(BUILD)/cstore: $(BUILD)/tools/cstore.o $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/cstore-fault: $(BUILD)/tools/cstore_fault.o $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# cstore-bench drives the peer engines whose headers are installed (make bench installs them);
# without them it builds with cstore alone. RocksDB is the release build that
# perf/rocksdb-release.sh leaves in $(BUILD)/peers/rocksdb (make bench makes it once) when it is
# there, else Debian's library, which has its asserts on; the driver reports which.
# $(BENCH_STAMP) holds the list of peers and changes (and so rebuilds the bench objects) only
# when the list does.
ROCKSDB_DIR := $(abspath $(BUILD)/peers/rocksdb)
ROCKSDB_REL := $(if $(wildcard $(ROCKSDB_DIR)/BUILD-INFO),$(wildcard $(ROCKSDB_DIR)/lib/librocksdb.so))
ROCKSDB_H   := $(if $(ROCKSDB_REL),$(ROCKSDB_DIR)/include,/usr/include)
ROCKSDB_VER := $(shell sed -n 's/^\#define ROCKSDB_[MP][AI][JNT][A-Z]* \([0-9]*\)$$/\1/p' \
                 $(ROCKSDB_H)/rocksdb/version.h 2>/dev/null | paste -sd. -)
BENCH_PEERS := $(if $(wildcard $(ROCKSDB_H)/rocksdb/c.h),ROCKSDB) \
               $(if $(wildcard /usr/include/lmdb.h),LMDB) $(if $(wildcard /usr/include/sqlite3.h),SQLITE)
ROCKSDB_LNK := -Wl,-rpath,$(ROCKSDB_DIR)/lib -L$(ROCKSDB_DIR)/lib
BENCH_LIBS  := $(if $(filter ROCKSDB,$(BENCH_PEERS)),$(if $(ROCKSDB_REL),$(ROCKSDB_LNK)) -lrocksdb) \
               $(if $(filter LMDB,$(BENCH_PEERS)),-llmdb) $(if $(filter SQLITE,$(BENCH_PEERS)),-lsqlite3)
BENCH_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard perf/bench*.c))
BENCH_STAMP := $(BUILD)/perf/peers.txt
BENCH_KEY   := $(strip $(BENCH_PEERS) $(if $(ROCKSDB_REL),ROCKSDB_RELEASE) $(ROCKSDB_VER))
$(shell mkdir -p $(BUILD)/perf && echo '$(BENCH_KEY)' | cmp -s - $(BENCH_STAMP) || \
	echo '$(BENCH_KEY)' > $(BENCH_STAMP))
$(BENCH_OBJ): CFLAGS += $(BENCH_PEERS:%=-DBENCH_HAVE_%) -DBENCH_ROCKSDB_VERSION='"$(ROCKSDB_VER)"'
$(BENCH_OBJ): CFLAGS += $(if $(ROCKSDB_REL),-I$(ROCKSDB_DIR)/include \
                 -DBENCH_ROCKSDB_RELEASE_DIR='"$(ROCKSDB_DIR)/"')
$(BENCH_OBJ): $(BENCH_STAMP)

$(BUILD)/cstore-bench: $(BENCH_OBJ) $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(BENCH_LIBS) $(LDLIBS)

$(BUILD)/raft-sim: $(SIM_SRC:%.c=$(BUILD)/%.o) $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/integration/%.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# The fast suite: what CI runs. Long runs go behind test-long.
test: all $(UNIT_BIN) $(INTEG_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

test-long: all $(UNIT_BIN) $(INTEG_BIN)
	@BUILD=$(BUILD) CS_TEST_LONG=1 sh tests/run.sh

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=address test

tsan: deps
	@TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp $$TSAN_OPTIONS" \
		$(MAKE) --no-print-directory BUILD=build-tsan SAN=thread test

bench: all
	@sh perf/bench.sh

install: lib tools
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/cstore.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libcstore.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/$(SONAME) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libcstore.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' cstore.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/cstore.pc	install -m 755 $(filter-out $(BUILD)/raft-sim,$(TOOLS)) $(DESTDIR)$(PREFIX)/bin/

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan

.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
