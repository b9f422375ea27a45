//! The mutation engine: a small deterministic RNG, and byte-level mutations stacked on a seed (bit
//! and byte flips, inserts, deletes, interesting integers in binary and in decimal text, chunk
//! copies, splices from other seeds, truncation). Case `i` of a run is a pure function of the run's
//! seed, the target and `i`, so the supervisor can rebuild the input of a case that killed a worker.

/// One input: named files (a single file for most targets, a folder for the model readers).
#[derive(Clone, Debug)]
pub struct Input {
    pub files: Vec<(String, Vec<u8>)>,
}

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// FNV-1a, to fold a target's name into its case seeds.
pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The RNG of case `i` of a run.
pub fn case_rng(seed: u64, target: &str, i: u64) -> Rng {
    let mut r = Rng::new(seed ^ fnv(target) ^ i.wrapping_mul(0xd134_2543_de82_ef95));
    r.next();
    r
}

const INTERESTING: [u64; 22] = [
    0,
    1,
    2,
    7,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    1 << 60,
    i64::MAX as u64,
    u64::MAX,
];

const INTERESTING_TEXT: [&str; 14] = [
    "0", "-1", "1", "-0", "1e309", "NaN", "null", "4294967296", "18446744073709551615", "18446744073709551616", "9007199254740993",
    "1152921504606846976", "[]", "\"\"",
];

/// A position in `len`, biased towards the first and last 4 KiB (headers, zip directories).
fn pos(rng: &mut Rng, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    match rng.below(4) {
        0 => rng.below(len.min(4096)),
        1 => len - 1 - rng.below(len.min(4096)),
        _ => rng.below(len),
    }
}

/// Applies one random mutation to `data`; `other` is a random seed file to splice from, `dict`
/// the target's tokens (opcodes, JSON fragments), inserted repeated.
pub fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], dict: &[&[u8]]) {
    let len = data.len();
    match rng.below(12) {
        11 if !dict.is_empty() => {
            let token = dict[rng.below(dict.len())];
            // Mostly a few, sometimes very many (deep nesting, long DUP chains).
            let times = if rng.chance(8) { 1 + rng.below(200_000) } else { 1 + rng.below(32) };
            let p = pos(rng, len + 1).min(len);
            data.splice(p..p, token.iter().copied().cycle().take(token.len() * times));
        }
        0 if len > 0 => {
            let p = pos(rng, len);
            data[p] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let p = pos(rng, len);
            data[p] = rng.next() as u8;
        }
        2 => {
            let p = pos(rng, len + 1).min(len);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(p..p, bytes);
        }
        3 if len > 0 => {
            let p = pos(rng, len);
            let n = (1 + rng.below(64)).min(len - p);
            data.drain(p..p + n);
        }
        4 if len > 0 => {
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let bytes = if rng.chance(2) { v.to_le_bytes() } else { v.to_be_bytes() };
            let bytes = if bytes[0] == 0 && width < 8 && rng.chance(2) { &bytes[8 - width..] } else { &bytes[..width] };
            let p = pos(rng, len);
            let end = (p + bytes.len()).min(len);
            data[p..end].copy_from_slice(&bytes[..end - p]);
        }
        5 => replace_number(rng, data),
        6 if len > 1 => {
            // Repeat a chunk of the input somewhere (nesting, duplicated entries, DUP opcodes).
            let a = pos(rng, len);
            let n = (1 + rng.below(256)).min(len - a);
            let chunk = data[a..a + n].to_vec();
            let times = if rng.chance(4) { 1 + rng.below(64) } else { 1 };
            let p = pos(rng, len);
            data.splice(p..p, chunk.iter().copied().cycle().take(n * times));
        }
        7 if !other.is_empty() => {
            let a = rng.below(other.len());
            let n = (1 + rng.below(512)).min(other.len() - a);
            let p = pos(rng, len + 1).min(len);
            if rng.chance(2) {
                data.splice(p..p, other[a..a + n].iter().copied());
            } else {
                let end = (p + n).min(len);
                data.splice(p..end, other[a..a + n].iter().copied());
            }
        }
        8 if len > 0 => data.truncate(pos(rng, len)),
        9 if len > 1 => {
            // Swap two bytes far apart.
            let (a, b) = (pos(rng, len), pos(rng, len));
            data.swap(a, b);
        }
        _ if len > 0 => {
            let p = pos(rng, len);
            data[p] = data[p].wrapping_add(1 + rng.below(3) as u8).wrapping_sub(2);
        }
        _ => data.push(rng.next() as u8),
    }
}

/// Replaces a run of ASCII digits (a JSON number, a size in a header) by an interesting value.
fn replace_number(rng: &mut Rng, data: &mut Vec<u8>) {
    let len = data.len();
    if len == 0 {
        return;
    }
    let start = pos(rng, len);
    let Some(off) = data[start..].iter().position(u8::is_ascii_digit) else { return };
    let a = start + off;
    let b = a + data[a..].iter().take_while(|c| c.is_ascii_digit() || **c == b'.' || **c == b'e' || **c == b'-').count();
    let text = if rng.chance(3) {
        (rng.next() >> rng.below(64)).to_string()
    } else {
        INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())].to_string()
    };
    data.splice(a..b, text.into_bytes());
}

/// Case `i`'s input: the first cases are the seeds themselves, then 1–8 stacked mutations of one
/// file of a random seed.
pub fn make_case(seeds: &[Input], dict: &[&[u8]], seed: u64, target: &str, i: u64) -> Input {
    if (i as usize) < seeds.len() {
        return seeds[i as usize].clone();
    }
    let mut rng = case_rng(seed, target, i);
    let mut input = seeds[rng.below(seeds.len())].clone();
    let other_seed = &seeds[rng.below(seeds.len())];
    let other = &other_seed.files[rng.below(other_seed.files.len())].1;
    let f = rng.below(input.files.len());
    let stack = 1 + rng.below(8);
    for _ in 0..stack {
        mutate_once(&mut rng, &mut input.files[f].1, other, dict);
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_are_reproducible_and_differ() {
        let seeds = vec![Input { files: vec![("a".into(), b"{\"dim\": 64, \"n_heads\": 4}".to_vec())] }];
        let a = make_case(&seeds, &[], 7, "config", 100);
        let b = make_case(&seeds, &[], 7, "config", 100);
        assert_eq!(a.files, b.files);
        let distinct: std::collections::HashSet<Vec<u8>> = (1..200).map(|i| make_case(&seeds, &[], 7, "config", i).files[0].1.clone()).collect();
        assert!(distinct.len() > 150, "{} distinct of 199", distinct.len());
        assert_eq!(make_case(&seeds, &[], 7, "config", 0).files, seeds[0].files);
    }

    #[test]
    fn every_mutation_copes_with_empty_and_tiny_inputs() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            let mut d: Vec<u8> = (0..rng.below(3)).map(|_| rng.next() as u8).collect();
            mutate_once(&mut rng, &mut d, b"", &[]);
            mutate_once(&mut rng, &mut d, b"xyz", &[b"(", b""]);
        }
    }
}
