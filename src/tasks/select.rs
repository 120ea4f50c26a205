//! Which tasks llama-perplexity scores, and in which order, when it draws them at random.
//!
//! llama.cpp seeds a `std::mt19937` with 1 and draws in two different ways:
//! - HellaSwag always draws (even when all tasks are used): `std::uniform_int_distribution<size_t>`
//!   over the tasks not yet drawn, removing the drawn one and keeping the others in order. The
//!   distribution is libstdc++'s (the reference build uses GCC's library): for a 32-bit engine it
//!   maps one draw `x` to `(x * range) >> 32`, drawing again while the low 32 bits of the product
//!   fall below `2^32 mod range` (Lemire's method).
//! - WinoGrande and multiple-choice draw only when fewer tasks are asked for than the file has:
//!   `j = int(2^-32 * float(x) * float(left))` in f32, then the drawn index is replaced by the
//!   last one still left (swap-remove).
//!
//! Both are reproduced here bit for bit, so the same file and task count give the same tasks in
//! the same order as llama-perplexity.

/// The 32-bit Mersenne Twister (`std::mt19937`), from its published definition.
pub struct Mt19937 {
    state: [u32; N],
    next: usize,
}

const N: usize = 624;
const M: usize = 397;

impl Mt19937 {
    pub fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, next: N }
    }

    /// Regenerates all 624 words of state (the "twist").
    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % N] & 0x7fff_ffff);
            let mut v = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.next = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.next == N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}

/// libstdc++'s `uniform_int_distribution` over `0..n` (`n` >= 1, below 2^32) driven by a 32-bit
/// engine.
fn uniform_below(rng: &mut Mt19937, n: u32) -> usize {
    let range = n as u64;
    let mut product = rng.next_u32() as u64 * range;
    let mut low = product as u32;
    if low < n {
        let threshold = n.wrapping_neg() % n;
        while low < threshold {
            product = rng.next_u32() as u64 * range;
            low = product as u32;
        }
    }
    (product >> 32) as usize
}

/// HellaSwag's order: `count` of the `total` tasks (file indices), drawn as llama.cpp draws them.
pub fn hellaswag_order(total: usize, count: usize) -> Vec<usize> {
    let mut rng = Mt19937::new(1);
    let mut left: Vec<usize> = (0..total).collect();
    (0..count.min(total))
        .map(|_| left.remove(uniform_below(&mut rng, left.len() as u32)))
        .collect()
}

/// WinoGrande's and multiple-choice's pick of `count` of `total` tasks (file indices), or all
/// tasks in file order when `count` is `None` or not below `total` (llama.cpp draws only then).
pub fn float_pick_order(total: usize, count: Option<usize>) -> Vec<usize> {
    let count = match count {
        Some(c) if c < total => c,
        _ => return (0..total).collect(),
    };
    let mut rng = Mt19937::new(1);
    // 1 / (1 + float(mt19937::max())): 2^32 is the float nearest 2^32 - 1, so this is 2^-32.
    let scale = 1.0f32 / (1.0f32 + u32::MAX as f32);
    let mut left: Vec<usize> = (0..total).collect();
    (0..count)
        .map(|_| {
            let x = rng.next_u32() as f32;
            let j = (scale * x * left.len() as f32) as usize;
            // A draw that rounds up to 2^32 gives j == left.len(), an out-of-bounds read in
            // llama.cpp (chance about 2^-25 per draw); the last task is the nearest defined choice.
            left.swap_remove(j.min(left.len() - 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_standard() {
        // C++11 [rand.predef]: the 10000th draw of a default-constructed mt19937 (seed 5489).
        let mut rng = Mt19937::new(5489);
        let v = (0..10000).map(|_| rng.next_u32()).last().unwrap();
        assert_eq!(v, 4_123_659_995);
    }

    #[test]
    fn orders_are_permutations() {
        let mut h = hellaswag_order(24, 24);
        h.sort();
        assert_eq!(h, (0..24).collect::<Vec<_>>());
        let mut f = float_pick_order(30, Some(29));
        f.sort();
        f.dedup();
        assert_eq!(f.len(), 29);
        assert_eq!(float_pick_order(5, None), vec![0, 1, 2, 3, 4]);
        assert_eq!(float_pick_order(5, Some(7)), vec![0, 1, 2, 3, 4]);
    }
}
