//! Stable-Rust replay of the committed seeds (`fuzz/seeds/<target>/`)
//! through each target's body, plus a fixed number of cheap deterministic
//! mutations of every seed (bit flips, byte changes, cuts, splices), so
//! the targets cannot rot and the invariants they check hold on meaningful
//! inputs. Real fuzzing is `cargo fuzz run` (docs/fuzzing.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutated inputs per target, at most, and the time each target may take.
const MUTATIONS: usize = 20_000;
const BUDGET: Duration = Duration::from_secs(4);

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable seed directory").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, data)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 3, "{target}: only {} seeds", out.len());
    out
}

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len());
        match rng.below(6) {
            0 if !d.is_empty() => d[at] ^= 1 << rng.below(8),
            1 if !d.is_empty() => d[at] = rng.next() as u8,
            2 => d.truncate(at),
            3 => d.insert(at.min(d.len()), rng.next() as u8),
            4 if !d.is_empty() => {
                d.remove(at);
            }
            _ => {
                // Splice: this seed's head, another seed's tail.
                let from = rng.below(other.len());
                d.truncate(at);
                d.extend_from_slice(&other[from..]);
            }
        }
    }
    d
}

fn smoke(target: &str, run: fn(&[u8])) {
    let seeds = seeds(target);
    for (path, data) in &seeds {
        eprintln!("{target}: {}", path.display());
        run(data);
    }
    let mut rng = Rng(0x7469_6465_6761_7465);
    let start = Instant::now();
    let mut n = 0;
    while n < MUTATIONS && start.elapsed() < BUDGET {
        let (_, seed) = &seeds[rng.below(seeds.len())];
        let (_, other) = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, other);
        let outcome = std::panic::catch_unwind(|| run(&input));
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("tidegate-fuzz-{target}-crash"));
            std::fs::write(&path, &input).expect("write the crashing input");
            panic!(
                "{target}: mutation {n} panicked; input saved to {}",
                path.display()
            );
        }
        n += 1;
    }
    eprintln!(
        "{target}: {} seeds, {n} mutations in {:?}",
        seeds.len(),
        start.elapsed()
    );
}

#[test]
fn handshake() {
    smoke("handshake", tidegate_fuzz::handshake::run);
}

#[test]
fn scanner() {
    smoke("scanner", tidegate_fuzz::scanner::run);
}

#[test]
fn mux_codec() {
    smoke("mux_codec", tidegate_fuzz::mux_codec::run);
}

#[test]
fn config() {
    smoke("config", tidegate_fuzz::config::run);
}

#[test]
fn chunked() {
    smoke("chunked", tidegate_fuzz::chunked::run);
}

#[test]
fn path() {
    smoke("path", tidegate_fuzz::path::run);
}

#[test]
fn framing() {
    smoke("framing", tidegate_fuzz::framing::run);
}

#[test]
fn upstream_response() {
    smoke("upstream_response", tidegate_fuzz::upstream_response::run);
}

#[test]
fn jwt() {
    smoke("jwt", tidegate_fuzz::jwt::run);
}
