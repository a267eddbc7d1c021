#!/usr/bin/env bash
# make crash: kill -9 trials of edgerec serve during ingest. CRASH_TRIALS
# (10) trials of single-event POSTs and as many of batches of 100, from 4
# concurrent clients with an event_id on every event; each trial kills the
# server with SIGKILL after a random number of acknowledged requests,
# restarts it on the same data directory and checks that every event a
# client got a 200 for is stored (the users' profiles count them; each,
# sent again, is answered as a repeat). One line per trial: acknowledged,
# found, lost; exit 1 on any loss. The trials are TestCrashTrials
# (cmd/edgerec/crash_test.go), which go test without -short runs once per kind.
set -euo pipefail
cd "$(dirname "$0")/.."
EDGEREC_CRASH_TRIALS=${CRASH_TRIALS:-10} ${GO:-go} test -count=1 -v -run '^TestCrashTrials$' -timeout 15m ./cmd/edgerec
