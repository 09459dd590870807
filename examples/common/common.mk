# Shared by the examples' Makefiles (GNU make; recipes are POSIX sh).
#
# BIN     a folder of cx tools put first on PATH (`make test-examples` passes the build's bin/);
#         empty: the tools on PATH are used (an installed cx).
# OUT     where everything is written (default: out/ in the example's folder).
# THREADS --threads of every tool (0: every core).
# SEED    --seed of every step that draws random numbers.
BIN     ?=
OUT     ?= out
THREADS ?= 0
SEED    ?= 0
ifneq ($(BIN),)
export PATH := $(abspath $(BIN)):$(PATH)
endif

# A failed or interrupted recipe leaves no target behind that looks complete: the tools write their
# -o files atomically (a temporary name, renamed when complete), and what a recipe writes itself goes
# to $@.tmp first and is renamed. A pipe's exit status is its last command's, but a stream cut short
# is refused by every reader (no __end__ member; zero bytes are truncated too), so when a writer fails
# mid-pipe the reader fails with it and leaves nothing.
.DELETE_ON_ERROR:
SHELL := /bin/sh

COMMON := $(dir $(lastword $(MAKEFILE_LIST)))
PHANTOM_FOLDER := sh $(COMMON)phantom-folder.sh
# check.sh: small assertions on TSV tables, each failing with a message that says what was expected.
CHECK := sh $(COMMON)check.sh
