# edgerec — `make` lists the targets.
GO        ?= go
BIN       := bin/edgerec
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
SAMPLE    := data/sample
RUNDIR    := data/run
ADDR      ?= 127.0.0.1:8080
API_KEY   ?= dev-key
FUZZTIME  ?= 30s
FUZZEXECS ?=
FUZZMINTIME ?= 5s
FUZZPARALLEL ?=
FUZZ      ?= .
BENCHCOUNT ?= 6
CRASH_TRIALS ?= 10

.PHONY: help run sample chromium test test-retention test-race fmt vet check-all fuzz e2e docs-check soak crash bench bench-go bench-scale build docker clean

help: ## show this help
	@echo "edgerec make targets:"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build bin/edgerec (static, no cgo)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/edgerec

$(SAMPLE)/events.csv.gz: | build
	@mkdir -p $(SAMPLE)
	$(BIN) gen --events $(SAMPLE)/events.csv.gz --items $(SAMPLE)/items.csv.gz --n 200000

sample: build $(SAMPLE)/events.csv.gz ## generate the bundled sample shop data (edgerec gen)

run: sample ## generate the sample shop, build its snapshot, and serve it on ADDR
	$(BIN) build --events $(SAMPLE)/events.csv.gz --items $(SAMPLE)/items.csv.gz --out $(RUNDIR)/snapshots
	@echo
	@echo "Try, once it listens:"
	@echo "  curl 'http://$(ADDR)/v1/items/i1/similar?k=5'"
	@echo "  curl -H 'Authorization: Bearer $(API_KEY)' -d '{\"user_id\":\"v1\",\"item_id\":\"i2\",\"event\":\"view\"}' http://$(ADDR)/v1/events"
	@echo "  curl 'http://$(ADDR)/v1/users/v1/recommendations?k=5'"
	@echo "  curl 'http://$(ADDR)/v1/page?page=lp_consulting&visitor=v1&placements=home,product_page&item=i2&k=4'"
	@echo
	$(BIN) serve --data $(RUNDIR) --addr $(ADDR) --api-key $(API_KEY) --config edgerec.yaml

# The browser tests (cmd/edgerec/browser_test.go) drive Debian's chromium;
# fonts-noto-cjk draws the Japanese of the sample landing page. Installed
# only when missing and when we may (root with apt-get, as in CI); a
# failed install does not stop the other tests: the browser test then
# fails in CI and skips elsewhere, saying why.
CHROMIUM  ?= /usr/bin/chromium
CJK_FONT  := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

chromium: ## install chromium and CJK fonts for the browser tests (root with apt-get, when missing)
	@if [ -x $(CHROMIUM) ] && [ -f $(CJK_FONT) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and fonts-noto-cjk for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk >/dev/null) \
			|| echo "warning: cannot install chromium: the browser tests will fail in CI and skip elsewhere"; \
	else \
		echo "note: $(CHROMIUM) missing and not root with apt-get: the browser tests will skip (apt-get install chromium fonts-noto-cjk)"; \
	fi

# The browser test runs alone, after the other packages: Chromium takes
# both cores for seconds, and bench's timing tests (open-loop rates, the
# saturation search) misjudge a machine that busy.
BROWSER_TEST := '^TestBrowser$$'

# docs-check runs last (about 20 s): the README's commands against the
# binary the tests just passed, so a change that breaks what a newcomer
# types fails make test, and CI, like any other test.
test: vet chromium ## vet, then all tests: -race -short, then the long quality tests without -race, then docs-check
	$(GO) test -race -short -shuffle=on -skip $(BROWSER_TEST) ./...
	$(GO) test -race -short -run $(BROWSER_TEST) ./cmd/edgerec
	$(GO) test -count=1 -skip $(BROWSER_TEST) ./...
	$(GO) test -count=1 -run $(BROWSER_TEST) ./cmd/edgerec
	scripts/docs-check.sh

test-retention: ## the state store's retention plateau test with 1,000,000 anonymous visitors (about 20 s of CPU)
	EDGEREC_RETENTION_N=1000000 $(GO) test -count=1 -run '^TestRetentionPlateau$$' -v ./engine

test-race: ## all tests under the race detector, long ones included
	$(GO) test -race -shuffle=on ./...

fmt: ## gofmt -s
	gofmt -s -w $$(git ls-files '*.go')

vet: ## go vet, and fail on unformatted files
	$(GO) vet ./...
	@test -z "$$(gofmt -s -l $$(git ls-files '*.go') | tee /dev/stderr)" || (echo "gofmt: the files above need 'make fmt'" && false)

check-all: vet test ## every check CI runs

fuzz: ## every Fuzz* target for FUZZTIME each (30s) or FUZZEXECS inputs each, one after another: exec counts, a summary table (FUZZ=regexp picks targets)
	@GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZEXECS=$(FUZZEXECS) FUZZMINTIME=$(FUZZMINTIME) FUZZPARALLEL=$(FUZZPARALLEL) FUZZ='$(FUZZ)' scripts/fuzz.sh

e2e: build ## the binary end to end: gen, build, serve, every bench scenario, a shipped snapshot loaded under load (~20 s)
	scripts/e2e.sh

docs-check: ## README.md top to bottom: make run in a fresh copy on a free port, then every sh block and printed curl line (2xx only)
	scripts/docs-check.sh

soak: build ## 10 min of every kind of traffic at 70% of saturation, snapshot swaps and config reloads: 0 errors, RSS growth < 10% (SOAK_DURATION=…)
	scripts/soak.sh

crash: ## kill -9 trials during single and batched ingest: no acknowledged event lost (CRASH_TRIALS=10 of each)
	GO=$(GO) CRASH_TRIALS=$(CRASH_TRIALS) scripts/crash.sh

bench: build ## edgerec vs a static floor under the same load, wrk vs bench, Go benchmarks, build scale (BENCH_QUICK=1: about 3 min)
	scripts/bench.sh

bench-go: ## Go benchmarks into bench.new; benchstat against bench.old when present
	$(GO) test -run=NONE -bench=. -benchmem -count=$(BENCHCOUNT) ./... | tee bench.new
	@if [ -f bench.old ]; then $(GO) run golang.org/x/perf/cmd/benchstat@latest bench.old bench.new; \
	else echo "no bench.old: 'cp bench.new bench.old' to compare the next run"; fi

bench-scale: build ## gen + build at 1M, 3M and 10M events: time and peak RSS
	@scripts/bench-scale.sh $(BIN) $(SCALES)

docker: ## build the container image edgerec:VERSION (Dockerfile; needs a Docker daemon)
	docker build --build-arg VERSION=$(VERSION) -t edgerec:$(VERSION) -t edgerec:latest .

clean: ## remove build output and generated data
	rm -rf bin data bench.new bench-out fuzz-out soak-out
