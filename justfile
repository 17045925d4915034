# Shortcuts that mirror the README (each is a plain cargo command underneath).

# Build everything and run the fraud demo on generated data (embedded default).
demo n="200000" seed="42":
    cargo demo {{n}} {{seed}}

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
