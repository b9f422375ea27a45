# SPHINX client-side: the two commands a new user runs are `make demo` and `make test`.
CARGO_TARGET_DIR ?= $(HOME)/.cache/sphinx-target
export CARGO_TARGET_DIR
# lavapipe/Mesa want a runtime dir; headless machines often have none.
export XDG_RUNTIME_DIR ?= /tmp
SPHINX := $(CARGO_TARGET_DIR)/release/sphinx
DEMO_MODEL := out/demo-model
WASM_TARGET := wasm32-unknown-unknown
WASM := $(CARGO_TARGET_DIR)/$(WASM_TARGET)/release/sphinx_web.wasm
WASM_MT := $(CARGO_TARGET_DIR)/wasm-mt/$(WASM_TARGET)/release/sphinx_web.wasm
# The single-threaded build: SIMD128 (every browser with WebGPU has it). RUSTFLAGS replaces
# .cargo/config.toml's, so getrandom's backend is named again.
WASM_FLAGS := --cfg getrandom_backend="wasm_js" -C target-feature=+simd128
# The threaded build, for cross-origin isolated pages: shared memory (wasm atomics, so std is rebuilt
# with them: -Z build-std on the stable toolchain through RUSTC_BOOTSTRAP, with rustup's rust-src),
# relaxed SIMD, up to 4 GiB of memory.
WASM_MT_FLAGS := $(WASM_FLAGS) -C target-feature=+atomics,+bulk-memory,+mutable-globals,+relaxed-simd \
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
PORT ?= 8080
# Seconds per target of `make fuzz` (the short pass inside `make test` is fuzz/tests/short_pass.rs).
FUZZ_SECONDS ?= 600

.PHONY: all setup-demo setup-test build web site demo demo-cli test test-rust test-web test-wide bench-peers fuzz clean

all: build

# What a fresh Debian machine lacks (scripts/setup.sh says what; it skips what is present).
setup-demo:
	scripts/setup.sh demo
setup-test:
	scripts/setup.sh test

build:
	cargo build --release -p sphinx

# The npm package pkg/: the wasm engine in two builds (single-threaded; threaded for cross-origin
# isolated pages) and their wasm-bindgen glue (pkg/wasm/, generated) beside the hand-written entry,
# worker and types.
web: setup-demo build
	RUSTFLAGS='$(WASM_FLAGS)' cargo build --release -p sphinx-web --target $(WASM_TARGET)
	RUSTC_BOOTSTRAP=1 RUSTFLAGS='$(WASM_MT_FLAGS)' cargo build --release -p sphinx-web --features threads \
	  --target $(WASM_TARGET) -Z build-std=std,panic_abort --target-dir $(CARGO_TARGET_DIR)/wasm-mt
	rm -rf pkg/wasm
	wasm-bindgen --target web --out-dir pkg/wasm --out-name sphinx_web $(WASM)
	wasm-bindgen --target web --out-dir pkg/wasm --out-name sphinx_web_mt $(WASM_MT)
	printf 'export const TASK_TABLE = %s;\n' "$$($(SPHINX) tasks)" > pkg/wasm/tasks.js
	@for w in sphinx_web sphinx_web_mt; do echo "pkg/wasm/$${w}_bg.wasm: $$(wc -c < pkg/wasm/$${w}_bg.wasm) bytes, $$(gzip -9c pkg/wasm/$${w}_bg.wasm | wc -c) gzipped"; done

# The demo site out/site/: the page (www/), the package, a tiny random-weight SPHINX-Tiny-1k in the
# converted format (no real weights can be downloaded here) and models.json listing it.
site: build web
	rm -rf out/site
	mkdir -p out/site/models
	cp -r www/. out/site/
	cp -r pkg out/site/pkg
	$(SPHINX) demo-model --out out/site/models/demo
	printf '[\n  {"name": "Demo model (random weights, SPHINX-Tiny-1k structure)", "manifest": "models/demo/manifest.json", "size": %s, "precision": "f32"}\n]\n' \
	  "$$(du -sb out/site/models/demo | cut -f1)" > out/site/models.json

# Builds everything and serves the demo page on 127.0.0.1.
demo: site
	@echo "SPHINX demo: open http://127.0.0.1:$(PORT)/  (?model=URL of a manifest.json picks another model)"
	$(SPHINX) serve --root out/site --port $(PORT)

# The same tiny random-weight model answered on the command line.
demo-cli: build
	$(SPHINX) demo-model --out $(DEMO_MODEL) --force
	$(SPHINX) run --model $(DEMO_MODEL) --image www/assets/demo.png --prompt "What is in the image?" --max-tokens 24

test: setup-test
	$(MAKE) test-rust test-web

# The workspace includes fuzz/, whose test is a short fixed-seed pass over every fuzz target.
test-rust:
	cargo test --release --workspace

# Every fuzz target for FUZZ_SECONDS (stable Rust; crash inputs under fuzz/crashes/). FUZZ_SEED=S
# repeats a run.
fuzz:
	cargo run --release -p sphinx-fuzz -- --target all --seconds $(FUZZ_SECONDS) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

# Browser tests: headless Chromium on SwiftShader's WebGPU, driven by playwright-core (npm ci).
test-web: build web site
	node --test --test-concurrency=1 tests/web/*.test.js

# Not part of `make test` (about 80 minutes without a GPU): the real-width `wide` model in Chromium
# under WebGPU's default limits, against the native GPU and CPU paths.
test-wide: build web
	node --test tests/web/slow/wide.test.js

# Not part of `make test`: ours against llama.cpp (native CPU build, from PyPI's llama-cpp-python
# source package) and wllama (in headless Chromium) on the same weights, in one run; prints the table
# (also out/peers/report.md). REPS=N repetitions (3), QUANTS=q8,q4. Needs cmake (installed if
# missing) and about 15 minutes the first time (the llama.cpp build), then about 10.
# (`$(or …)` splits at commas, so the formats' default is a plain variable)
QUANTS ?= q8,q4
bench-peers: setup-test build web
	node scripts/peers/bench-peers.mjs --reps $(or $(REPS),3) --quants $(QUANTS)

clean:
	rm -rf out
