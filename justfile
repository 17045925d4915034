# Shortcuts that mirror the README (each is a plain cargo command underneath).

# Build everything and run the fraud demo on generated data (embedded default).
demo n="200000" seed="42":
    cargo demo {{n}} {{seed}}

# The fraud demo end to end on Kafka (a local tansu broker unless broker= is given).
demo-kafka n="200000" seed="42" broker="":
    cargo demo {{n}} {{seed}} {{ if broker == "" { "--kafka" } else { "--broker " + broker } }}

# The whole test suite (builds the guest components first).
test:
    cargo xtask test

# Benchmarks (numbers go to BENCHMARKS.md by hand).
bench:
    cargo xtask bench

# Build the guest components for wasm32-wasip2.
guests:
    cargo xtask guests

# What CI runs.
ci:
    bash .ci/run
