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
ifeq ($(SAN),fuzzer)
# The library instrumented for libFuzzer (coverage) under ASan and UBSan; `make fuzz` builds it
# with clang into build-fuzz/. clang warns where btree.c copies a node's link pointer in and out
# of a freed node with memcpy (on purpose), which gcc accepts.
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -DCS_NO_JEMALLOC \
           -DCS_DEBUG -Wno-sizeof-pointer-memaccess -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
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
SIM_SRC   := tests/sim/raft_sim.c tests/sim/sim_store.c
TOOLS     := $(BUILD)/cstore $(BUILD)/cstored $(BUILD)/cstore-bench $(BUILD)/raft-sim $(BUILD)/txn-sim
TOOLS     += $(if $(wildcard tools/cstore_fault.c),$(BUILD)/cstore-fault)

.PHONY: all deps lib tools test test-unit test-long asan tsan bench fuzz fuzz-run fuzz-seeds install clean run \
        format readme-options

all: lib tools

# Every compile waits for the packages (an order-only prerequisite of the object rules), so
# `make -jN` on a fresh machine never compiles before the headers are installed. deps is phony:
# it runs once per make invocation, and is quick when everything is there.
deps:
	@sh tools/install-deps.sh

lib: $(BUILD)/libcstore.a $(BUILD)/$(SONAME)

tools: $(TOOLS)

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcstore.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/$(SONAME): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LDLIBS)
	ln -sf $(SONAME) $(BUILD)/libcstore.so

# The CLI: tools/cli.c, with its line format, its loader and its transaction reader (which the
# unit tests link too).
CLI_OBJ := $(BUILD)/tools/lineformat.o $(BUILD)/tools/load.o $(BUILD)/tools/apply.o

$(BUILD)/cstore: $(BUILD)/tools/cli.o $(CLI_OBJ) $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# cstored: the server (tools/cstored.c and server/, which is not part of the library: it runs
# inside the shard loops through engine/host.h).
SERVER_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard server/*.c))

$(BUILD)/cstored: $(BUILD)/tools/cstored.o $(SERVER_OBJ) $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# cstored in the foreground on ./data/cstored, 127.0.0.1:6380.
run: $(BUILD)/cstored
	$(BUILD)/cstored

# cstore-fault: the tool's main, its scenario families and its model (tools/fault_*.c).
FAULT_OBJ := $(patsubst %.c,$(BUILD)/%.o,tools/cstore_fault.c $(wildcard tools/fault_*.c))
$(BUILD)/cstore-fault: $(FAULT_OBJ) $(BUILD)/libcstore.a
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

$(BUILD)/txn-sim: $(BUILD)/tests/sim/txn_sim.o $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# The CLI's line format and loader live in tools/, outside the library.
$(BUILD)/tests/test_lineformat: $(BUILD)/tests/unit/test_lineformat.o $(BUILD)/tools/lineformat.o \
                                $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

$(BUILD)/tests/test_load: $(BUILD)/tests/unit/test_load.o $(CLI_OBJ) $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

$(BUILD)/tests/test_apply: $(BUILD)/tests/unit/test_apply.o $(CLI_OBJ) $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# cstore-fault's model and checker live in tools/ too.
$(BUILD)/tests/test_fault_model: $(BUILD)/tests/unit/test_fault_model.o $(BUILD)/tools/fault_model.o \
                                 $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# The server's RESP module lives in server/, outside the library.
$(BUILD)/tests/test_resp: $(BUILD)/tests/unit/test_resp.o $(BUILD)/server/resp.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/integration/%.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# The fast suite: what CI runs. Long runs go behind test-long.
# test_server drives a real cstored with hiredis.
$(BUILD)/tests/test_server: LDLIBS += -lhiredis

test: all $(UNIT_BIN) $(INTEG_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

test-long: all $(UNIT_BIN) $(INTEG_BIN)
	@BUILD=$(BUILD) CS_TEST_LONG=1 sh tests/run.sh
	@BUILD=$(BUILD) sh tests/sim/mutants.sh
	@$(MAKE) --no-print-directory fuzz FUZZ_RUNS=$(FUZZ_RUNS_LONG) FUZZ_SEED=0

# libFuzzer targets tests/fuzz/fuzz_<target>.c, built with clang into build-fuzz/ and run for
# FUZZ_RUNS inputs each, from the seed corpus tests/fuzz/corpus_<target>/ (see tests/fuzz/run.sh).
# The default is CI's short pass (.ci/run); test-long runs FUZZ_RUNS_LONG with a random seed.
FUZZ_SRC       := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN       := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_RUNS      ?= 10000
FUZZ_RUNS_LONG := 200000
FUZZ_SEED      ?= 1

fuzz:
	@sh tools/install-deps.sh clang libclang-rt-dev
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang SAN=fuzzer fuzz-run

# Rewrites the seed corpora from files the library writes (tests/fuzz/gen_seeds.c).
fuzz-seeds: $(BUILD)/fuzz-seeds
	$(BUILD)/fuzz-seeds tests/fuzz

$(BUILD)/fuzz-seeds: $(BUILD)/tests/fuzz/gen_seeds.o $(BUILD)/libcstore.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-run: $(FUZZ_BIN)
	@BUILD=$(BUILD) FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SEED=$(FUZZ_SEED) sh tests/fuzz/run.sh

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz/fuzz_lineformat: $(BUILD)/tests/fuzz/fuzz_lineformat.o $(BUILD)/tools/lineformat.o \
                               $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz/fuzz_resp: $(BUILD)/tests/fuzz/fuzz_resp.o $(BUILD)/server/resp.o $(BUILD)/libcstore.a
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

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
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/cstore.pc
	install -m 755 $(filter-out $(BUILD)/raft-sim $(BUILD)/txn-sim,$(TOOLS)) $(DESTDIR)$(PREFIX)/bin/

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# Rewrites the README's options table from the options table of engine/options.c (between the
# options:begin and options:end lines); tests/unit/test_options.c fails while they differ.
readme-options: $(BUILD)/cstore
	$(BUILD)/cstore --help-options-markdown > $(BUILD)/options.md
	awk -v table=$(BUILD)/options.md '/^<!-- options:end/ { skip = 0 } !skip { print } \
		/^<!-- options:begin/ { while ((getline l < table) > 0) print l; skip = 1 }' \
		README.md > $(BUILD)/README.md.new
	mv $(BUILD)/README.md.new README.md

clean:
	rm -rf build build-asan build-tsan build-fuzz

.SECONDARY:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
