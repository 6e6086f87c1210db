//! What every benchmark binary shares.

/// A knob from the environment, or its default.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether this run measures: `cargo bench` passes `--bench`. `cargo test --all-targets`
/// runs the binary too, in a debug build whose timings mean nothing, so it only checks that
/// the benchmark builds and says how to run it.
pub fn measuring(name: &str) -> bool {
    let measuring = std::env::args().any(|arg| arg == "--bench");
    if !measuring {
        println!("{name}: a benchmark; run it with `cargo bench --bench {name}`");
    }
    measuring
}
