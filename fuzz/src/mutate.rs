//! The fallback fuzzer where AFL cannot run: random mutations of the seeds, in process,
//! each input's panic caught and told apart by where it happened.
//!
//! It has no coverage feedback: a mutated input joins the pool now and then so that
//! mutations stack up. Panics must unwind (the `fuzz` profile), else the first ends the run.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Target;

/// Longest input the loop makes.
const MAX_INPUT: usize = 64 * 1024;

/// Most inputs kept in the pool.
const MAX_POOL: usize = 4096;

/// Pieces of the formats under test, spliced into inputs.
const TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{#if ",
    "{{/if}}",
    "{{else}}",
    "{{^",
    "{{#unless ",
    "{{!",
    "{%",
    "%}",
    "{#",
    "| int",
    "| safe",
    "\"",
    "'",
    "`",
    "\\",
    "\n",
    "\r\n",
    "=",
    "#",
    "export ",
    "caddy_reverse_proxy_upstreams_healthy{upstream=\"",
    "\"} ",
    "healthy:",
    "unhealthy:1716200000",
    "active",
    "[[",
    "]]",
    " = ",
    "{$",
    "\\{",
    "\0",
    "\u{2028}",
    "\u{feff}",
    "\u{85}",
    "é",
    "𝄞",
    "%",
    "$",
    "-1",
    "18446744073709551616",
    "1e999",
    ": ",
    "- ",
];

/// What one loop run did.
#[derive(Debug, Default)]
pub struct LoopReport {
    /// Inputs checked.
    pub executions: u64,
    /// One input per distinct panic (by where it happened), in the order found.
    pub crashes: Vec<Crash>,
}

/// An input that made the check panic.
#[derive(Debug, Clone)]
pub struct Crash {
    /// Where it panicked, and the first line of the message.
    pub signature: String,
    /// The input.
    pub input: Vec<u8>,
}

/// Mutates `seeds` at random and checks each input with `target` until `budget` is spent.
/// `rng_seed` makes a run repeatable.
pub fn run_loop(target: &Target, seeds: &[Vec<u8>], budget: Duration, rng_seed: u64) -> LoopReport {
    let last_panic: Arc<Mutex<Option<String>>> = Arc::default();
    let hook = panic::take_hook();
    let slot = Arc::clone(&last_panic);
    panic::set_hook(Box::new(move |info| {
        let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let first = message.lines().next().unwrap_or("");
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{place}: {first}"));
    }));

    let mut rng = Rng(rng_seed | 1);
    let mut pool: Vec<Vec<u8>> = if seeds.is_empty() { vec![Vec::new()] } else { seeds.to_vec() };
    let mut report = LoopReport::default();
    let mut seen = BTreeMap::new();
    let start = Instant::now();
    let mut i = 0usize;
    while i < pool.len().min(seeds.len()) || start.elapsed() < budget {
        // Every seed once as it is, then mutants.
        let input = if i < seeds.len() { seeds[i].clone() } else { mutate(&mut rng, &pool) };
        i += 1;
        report.executions += 1;
        if panic::catch_unwind(AssertUnwindSafe(|| (target.check)(&input))).is_err() {
            let signature = last_panic.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            // Same place, different message: still one crash (messages quote the input).
            let place = signature.split(": ").next().unwrap_or_default().to_owned();
            if seen.insert(place, ()).is_none() {
                report.crashes.push(Crash { signature, input });
            }
            continue;
        }
        if rng.below(16) == 0 {
            if pool.len() < MAX_POOL {
                pool.push(input);
            } else {
                let slot = rng.below(pool.len());
                pool[slot] = input;
            }
        }
    }
    panic::set_hook(hook);
    report
}

fn mutate(rng: &mut Rng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = pool[rng.below(pool.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.below(256) as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                data.insert(at, rng.below(256) as u8);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(16));
                data.drain(at..at + n);
            }
            4 | 5 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            6 if len > 0 => {
                // Repeat a slice: long lines, many series, deep nesting.
                let from = rng.below(len);
                let n = 1 + rng.below((len - from).min(256));
                let copies = 1 + rng.below(16);
                let piece: Vec<u8> = data[from..from + n].repeat(copies);
                data.splice(from..from, piece);
            }
            _ => {
                // Splice in part of another input.
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - from);
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[from..from + n].iter().copied());
                }
            }
        }
    }
    data.truncate(MAX_INPUT);
    data
}

/// xorshift64: enough randomness for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}
