# tokenmeter - GNU Makefile (see README.md).
#
#   make                  build bin/tokenmeter (build/default)
#   make test             unit + integration tests (starts the local stack)
#   make test-unit        unit tests only
#   make SANITIZE=1 ...   AddressSanitizer + UBSan build in build/asan
#   make demo             install what is missing, start the stack, replay the traces, report
#   make down             stop the local stack
#   make lab-up | lab-verify | lab-down   the DESIGN 1 topology in network namespaces (root)
#   make install          install bin/tokenmeter and the example seed under $(DESTDIR)$(PREFIX)

CC       ?= cc
PKGS     := rdkafka libmongoc-1.0 libmicrohttpd jansson
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wno-unused-parameter -Isrc $(shell pkg-config --cflags $(PKGS))
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -lpthread -ldl -lm

ifeq ($(SANITIZE),1)
VARIANT  := asan
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
else
VARIANT  := default
endif

B        := build/$(VARIANT)
TM_SHARED ?= $(abspath ../shared)
export TM_SHARED
LIB_SRC  := $(filter-out src/cmd/%,$(wildcard src/*/*.c))
CMD_SRC  := $(wildcard src/cmd/*.c)
LIB_OBJ  := $(LIB_SRC:src/%.c=$(B)/obj/%.o)
CMD_OBJ  := $(CMD_SRC:src/%.c=$(B)/obj/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
BIN      := $(B)/bin/tokenmeter

.PHONY: all test test-unit test-integration demo down deps stack-up clean lint asan-test \
        lab-up lab-verify lab-down install
all: $(BIN) bin/tokenmeter

$(B)/obj/%.o: src/%.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libtm.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CMD_OBJ) $(B)/libtm.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(B)/libtm.a $(LDLIBS)

bin/tokenmeter: $(BIN)
	@mkdir -p bin
	ln -sf ../$(BIN) $@

$(B)/tests/%: tests/unit/%.c $(B)/libtm.a $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(B)/libtm.a $(LDLIBS) -lcmocka

# The fake libnvidia-ml.so.1 of tests/unit/test_nvml.c, in four symbol sets (CASE-05).
FAKE_NVML := $(addsuffix libnvidia-ml.so.1,$(B)/fake/ $(B)/fake/v1/ $(B)/fake/noinit/ $(B)/fake/minimal/)
$(B)/fake/v1/libnvidia-ml.so.1: FAKE_DEFS := -DFAKE_NO_V2
$(B)/fake/noinit/libnvidia-ml.so.1: FAKE_DEFS := -DFAKE_NO_INIT
$(B)/fake/minimal/libnvidia-ml.so.1: FAKE_DEFS := -DFAKE_MINIMAL
$(FAKE_NVML): tests/fake/fake_nvml.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FAKE_DEFS) -fPIC -shared -Wl,-soname,libnvidia-ml.so.1 $(LDFLAGS) -o $@ $<

test-unit: export TM_FAKE_NVML_DIR := $(abspath $(B)/fake)
test-unit: $(UNIT_BIN) $(BIN) $(FAKE_NVML)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

test-integration: $(BIN) $(FAKE_NVML)
	TM_BIN=$(abspath $(BIN)) TM_FAKE_NVML_DIR=$(abspath $(B)/fake) tests/integration/run.sh

# The README's test command: everything, then again under ASan + UBSan.
test: deps
	$(MAKE) lint
	deploy/selftest.sh
	$(MAKE) fuzz-smoke
	$(MAKE) test-unit test-integration
	$(MAKE) SANITIZE=1 test-unit test-integration

deps:
	scripts/deps.sh

stack-up: deps
	scripts/stack.sh up

demo: deps
	$(MAKE) all
	scripts/demo.sh

down:
	scripts/stack.sh down

# The DESIGN 1 four-VM topology in network namespaces (root; see scripts/lab.sh).
lab-up: all
	scripts/lab.sh up

lab-verify:
	scripts/lab.sh verify

lab-down:
	scripts/lab.sh down

lint:
	shellcheck -x scripts/*.sh tests/integration/*.sh tests/fake/nvidia-smi .ci/run \
	    deploy/*.sh deploy/docker/*.sh

# What the VMs (deploy/vm3-processor.sh, deploy/vm4-producers.sh) and the images
# (deploy/docker/Dockerfile.*) install: make install PREFIX=/usr/local DESTDIR=/tmp/stage
PREFIX   ?= /usr/local
install: $(BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/tokenmeter
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tokenmeter
	install -m 0644 config/gpu_seed.json $(DESTDIR)$(PREFIX)/share/tokenmeter/gpu_seed.json

# libFuzzer harnesses of the nvidia-smi and gpu_seed.json parsers (clang, ASan + UBSan):
#   make fuzz-smoke   each for FUZZ_SMOKE_S s (CI)      make fuzz   each for FUZZ_S s
# Seeds: tests/fuzz/corpus/ plus the real CSV captures and seed example of $(TM_SHARED)/data
# when present (copied into build/fuzz/corpus/, where new inputs go); crashes go to
# build/fuzz/artifacts/.
FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -Isrc -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SMOKE_S ?= 20
FUZZ_S       ?= 600
FZ           := build/fuzz
FUZZ_ARGS     = -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
FUZZ_SMI_SRC := tests/fuzz/fuzz_smi.c src/gpu/gpu_smi_parse.c src/common/error.c
FUZZ_SEED_SRC := tests/fuzz/fuzz_seed.c src/gpu/gpu_seed.c src/common/error.c src/common/mem.c \
                 src/common/log.c

$(FZ)/fuzz_smi: $(FUZZ_SMI_SRC) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SMI_SRC) -lm

$(FZ)/fuzz_seed: $(FUZZ_SEED_SRC) $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(shell pkg-config --cflags jansson) -o $@ $(FUZZ_SEED_SRC) \
	    $(shell pkg-config --libs jansson) -lm

.PHONY: fuzz fuzz-smoke
fuzz-smoke: FUZZ_TIME := $(FUZZ_SMOKE_S)
fuzz: FUZZ_TIME := $(FUZZ_S)
fuzz fuzz-smoke: $(FZ)/fuzz_smi $(FZ)/fuzz_seed
	@mkdir -p $(FZ)/corpus/smi $(FZ)/corpus/seed $(FZ)/artifacts
	@cp -f $(TM_SHARED)/data/nvidia-smi/*.csv $(FZ)/corpus/smi/ 2>/dev/null || true
	@cp -f $(TM_SHARED)/data/gpu_seed.example.json $(FZ)/corpus/seed/ 2>/dev/null || true
	$(FZ)/fuzz_smi $(FUZZ_ARGS) -artifact_prefix=$(FZ)/artifacts/smi- \
	    $(FZ)/corpus/smi tests/fuzz/corpus/smi
	$(FZ)/fuzz_seed $(FUZZ_ARGS) -artifact_prefix=$(FZ)/artifacts/seed- \
	    $(FZ)/corpus/seed tests/fuzz/corpus/seed

clean:
	rm -rf build bin
