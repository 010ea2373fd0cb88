//! FF1 (NIST SP 800-38G) for exactly the coupon code spaces: AES-256, 10 numerals split
//! into halves of 5, one tweak, a radix per code alphabet (11,182 or 150).
//!
//! The general `fpe` crate costs ~2.6 µs per code (big integers and allocations, 6 % of
//! the server's CPU at full load). Here a half is below radix^5 < 2^68, so all the
//! arithmetic fits a `u128`, and of the AES blocks of each round's CBC-MAC over P || Q
//! only the last one changes: P, the tweak and the padding are the same every round, so
//! their MAC state is computed once per key. `fpe` stays as the reference the tests
//! compare with, input for input.

use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};

const HALF: usize = 5;

pub(super) struct Ff1 {
    aes: Aes256,
    radix: u128,
    /// radix^5: the modulus of every round.
    half_space: u128,
    /// Bytes of NUM_radix(B) in Q: ceil(ceil(5 · log2 radix) / 8).
    b_bytes: usize,
    /// Bytes of each round's PRF output kept as y: d = 4 · ceil(b / 4) + 4 (≤ 16 here).
    d_bytes: usize,
    /// CBC-MAC state after every block of P || Q but the last.
    state: [u8; 16],
    /// The first bytes of Q's last block (the end of T || [0]^pad), before [i] || NUM(B).
    head: Vec<u8>,
}

/// Two halves of a code's numerals, each as its number (most significant numeral first).
pub(super) type Halves = (u128, u128);

impl Ff1 {
    /// `radix` is at most 2^16 (numerals are `u16`); at least 2.
    pub(super) fn new(key: &[u8; 32], tweak: &[u8], radix: u16) -> Self {
        let aes = Aes256::new(&Array::from(*key));
        let radix_wide = u128::from(radix);
        let half_space = radix_wide.pow(HALF as u32);
        let b_bytes = (128 - (half_space - 1).leading_zeros() as usize).div_ceil(8);
        let d_bytes = 4 * b_bytes.div_ceil(4) + 4;
        let last_head = 16 - 1 - b_bytes;
        let t = tweak.len();
        let n = 2 * HALF;
        // P = [1, 2, 1] || [radix]^3 || [10] || [u mod 256] || [n]^4 || [t]^4.
        let mut prefix = vec![1u8, 2, 1];
        prefix.extend_from_slice(&u32::from(radix).to_be_bytes()[1..]);
        prefix.extend_from_slice(&[10, HALF as u8]);
        prefix.extend_from_slice(&(n as u32).to_be_bytes());
        prefix.extend_from_slice(&(t as u32).to_be_bytes());
        // Q's fixed part: T || [0]^((-t - b - 1) mod 16).
        prefix.extend_from_slice(tweak);
        let pad = (16 - (t + b_bytes + 1) % 16) % 16;
        prefix.resize(prefix.len() + pad, 0);
        let (full, last) = prefix.split_at(prefix.len() - last_head);
        let mut state = [0u8; 16];
        for block in full.chunks_exact(16) {
            xor_into(&mut state, block);
            encrypt(&aes, &mut state);
        }
        Self {
            aes,
            radix: radix_wide,
            half_space,
            b_bytes,
            d_bytes,
            state,
            head: last.to_vec(),
        }
    }

    #[cfg(test)]
    pub(super) fn half_space(&self) -> u128 {
        self.half_space
    }

    /// y = NUM(PRF(P || Q)) for round `i` and the half `num` that goes into Q.
    fn round(&self, i: u8, num: u128) -> u128 {
        let mut block = [0u8; 16];
        let head = self.head.len();
        block[..head].copy_from_slice(&self.head);
        block[head] = i;
        block[head + 1..].copy_from_slice(&num.to_be_bytes()[16 - self.b_bytes..]);
        xor_into(&mut block, &self.state);
        encrypt(&self.aes, &mut block);
        // d ≤ 16: S is the first d bytes of R.
        u128::from_be_bytes(block) >> (8 * (16 - self.d_bytes))
    }

    /// Both halves must be below radix^5.
    pub(super) fn encrypt(&self, (mut a, mut b): Halves) -> Halves {
        let m = self.half_space;
        for i in 0..10 {
            let c = (a + self.round(i, b) % m) % m;
            a = b;
            b = c;
        }
        (a, b)
    }

    /// Both halves must be below radix^5.
    pub(super) fn decrypt(&self, (mut a, mut b): Halves) -> Halves {
        let m = self.half_space;
        for i in (0..10).rev() {
            let c = (b + m - self.round(i, a) % m) % m;
            b = a;
            a = c;
        }
        (a, b)
    }

    /// Splits a number below radix^10 into its two halves.
    pub(super) fn halves_of(&self, number: u128) -> Halves {
        (number / self.half_space, number % self.half_space)
    }

    /// The number the two halves stand for, if it fits a `u128` (every packed input does).
    pub(super) fn number_of(&self, (a, b): Halves) -> Option<u128> {
        a.checked_mul(self.half_space)?.checked_add(b)
    }

    /// The numerals of the two halves, most significant first.
    pub(super) fn numerals_of(&self, (a, b): Halves) -> [u16; 2 * HALF] {
        let mut numerals = [0u16; 2 * HALF];
        for (half, mut number) in [(0, a), (HALF, b)] {
            for numeral in numerals[half..half + HALF].iter_mut().rev() {
                *numeral = (number % self.radix) as u16;
                number /= self.radix;
            }
        }
        numerals
    }

    /// The halves of 10 numerals, or None if one is not below the radix.
    pub(super) fn halves_from(&self, numerals: &[u16; 2 * HALF]) -> Option<Halves> {
        let number = |digits: &[u16]| {
            digits.iter().try_fold(0u128, |n, &d| {
                (u128::from(d) < self.radix).then(|| n * self.radix + u128::from(d))
            })
        };
        Some((number(&numerals[..HALF])?, number(&numerals[HALF..])?))
    }
}

fn xor_into(block: &mut [u8; 16], other: &[u8]) {
    for (byte, other) in block.iter_mut().zip(other) {
        *byte ^= other;
    }
}

fn encrypt(aes: &Aes256, block: &mut [u8; 16]) {
    let mut array = Array::from(*block);
    aes.encrypt_block(&mut array);
    *block = array.into();
}

#[cfg(test)]
mod tests {
    use fpe::ff1::{FF1, FlexibleNumeralString};
    use proptest::prelude::*;

    use super::*;

    const TWEAK: &[u8] = b"coupon.v1";
    /// Both alphabets' radices: full (11,172 syllables + 10 digits), readable (140 + 10).
    const RADICES: [u16; 2] = [11_182, 150];

    fn reference(key: &[u8; 32], radix: u16) -> FF1<Aes256> {
        FF1::<Aes256>::new(key, u32::from(radix)).unwrap_or_else(|_| unreachable!())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Same codes as the general implementation, both ways, for any key and input.
        #[test]
        fn agrees_with_the_fpe_crate(
            key in any::<[u8; 32]>(),
            radix in prop::sample::select(RADICES.to_vec()),
            a in any::<u128>(),
            b in any::<u128>(),
            tweak in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let ours = Ff1::new(&key, &tweak, radix);
            let (a, b) = (a % ours.half_space(), b % ours.half_space());
            let theirs = reference(&key, radix);
            let plain = ours.numerals_of((a, b));
            let cipher = ours.numerals_of(ours.encrypt((a, b)));
            let expected = theirs
                .encrypt(&tweak, &FlexibleNumeralString::from(plain.to_vec()))
                .unwrap_or_else(|e| panic!("{e:?}"));
            prop_assert_eq!(cipher.to_vec(), Vec::<u16>::from(expected));
            let back = ours.decrypt(ours.halves_from(&cipher).unwrap_or_else(|| unreachable!()));
            prop_assert_eq!(ours.numerals_of(back), plain);
        }
    }

    #[test]
    fn the_extremes_of_the_space_round_trip() {
        for radix in RADICES {
            let ours = Ff1::new(&[7; 32], TWEAK, radix);
            let space = ours.half_space();
            let top = space - 1;
            for halves in [(0, 0), (0, 1), (0, top), (1, 0), (top, top)] {
                assert_eq!(ours.decrypt(ours.encrypt(halves)), halves);
                assert_eq!(ours.halves_from(&ours.numerals_of(halves)), Some(halves));
            }
            assert_eq!(ours.halves_of(space + 2), (1, 2));
            assert_eq!(ours.number_of((1, 2)), Some(space + 2));
            let mut too_big = [0u16; 10];
            too_big[0] = radix;
            assert_eq!(ours.halves_from(&too_big), None);
        }
        let full = Ff1::new(&[7; 32], TWEAK, 11_182);
        let top = full.half_space() - 1;
        assert_eq!(full.number_of((top, top)), None);
    }
}
