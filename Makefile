# tokenmeter - GNU Makefile (see README.md).
#
#   make                  build bin/tokenmeter (build/default)
#   make test             unit + integration tests (starts the local stack)
#   make test-unit        unit tests only
#   make SANITIZE=1 ...   AddressSanitizer + UBSan build in build/asan
#   make demo             install what is missing, start the stack, replay the traces, report
#   make down             stop the local stack

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

.PHONY: all test test-unit test-integration demo down deps stack-up clean lint asan-test
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

test-unit: $(UNIT_BIN) $(BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

test-integration: $(BIN)
	TM_BIN=$(abspath $(BIN)) tests/integration/run.sh

# The README's test command: everything, then again under ASan + UBSan.
test: deps
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

lint:
	shellcheck scripts/*.sh tests/integration/*.sh .ci/run

clean:
	rm -rf build bin
