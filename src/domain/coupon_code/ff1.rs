//! FF1 (NIST SP 800-38G) for exactly the coupon code space: AES-256, radix 11,182,
//! 10 numerals split into halves of 5, one tweak.
//!
//! The general `fpe` crate costs ~2.6 µs per code (big integers and allocations, 6 % of
//! the server's CPU at full load). Here a half is below 11,182^5 < 2^68, so all the
//! arithmetic fits a `u128`, and of the three AES blocks of each round's CBC-MAC over
//! P || Q only the last one changes: P, the tweak and the padding are the same every
//! round, so their MAC state is computed once per key. `fpe` stays as the reference
//! the tests compare with, input for input.

use aes::Aes256;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};

/// The code alphabet: Hangul syllables and digits.
const RADIX: u128 = super::RADIX as u128;
const HALF: usize = 5;
/// radix^5: the modulus of every round.
const HALF_SPACE: u128 = RADIX.pow(HALF as u32);
/// Bytes of NUM_radix(B) in Q: ceil(ceil(5 · log2 11,182) / 8) = ceil(68 / 8).
const B_BYTES: usize = 9;
/// Q = T || [0]^pad || [i] || NUM(B), padded so that P || Q fills whole blocks: the
/// last block is the end of T || [0]^pad, then [i], then NUM(B).
const LAST_HEAD: usize = 16 - 1 - B_BYTES;

pub(super) struct Ff1 {
    aes: Aes256,
    /// CBC-MAC state after every block of P || Q but the last.
    state: [u8; 16],
    /// The first bytes of Q's last block (the end of T || [0]^pad).
    head: [u8; LAST_HEAD],
}

/// Two halves of a code's numerals, each as its number (most significant numeral first).
pub(super) type Halves = (u128, u128);

impl Ff1 {
    pub(super) fn new(key: &[u8; 32], tweak: &[u8]) -> Self {
        let aes = Aes256::new(&Array::from(*key));
        let t = tweak.len();
        let n = 2 * HALF;
        // P = [1, 2, 1] || [radix]^3 || [10] || [u mod 256] || [n]^4 || [t]^4.
        let mut prefix = vec![1u8, 2, 1];
        prefix.extend_from_slice(&super::RADIX.to_be_bytes()[1..]);
        prefix.extend_from_slice(&[10, HALF as u8]);
        prefix.extend_from_slice(&(n as u32).to_be_bytes());
        prefix.extend_from_slice(&(t as u32).to_be_bytes());
        // Q's fixed part: T || [0]^((-t - b - 1) mod 16).
        prefix.extend_from_slice(tweak);
        let pad = (16 - (t + B_BYTES + 1) % 16) % 16;
        prefix.resize(prefix.len() + pad, 0);
        let (full, last) = prefix.split_at(prefix.len() - LAST_HEAD);
        let mut state = [0u8; 16];
        for block in full.chunks_exact(16) {
            xor_into(&mut state, block);
            encrypt(&aes, &mut state);
        }
        let mut head = [0u8; LAST_HEAD];
        head.copy_from_slice(last);
        Self { aes, state, head }
    }

    /// y = NUM(PRF(P || Q)) for round `i` and the half `num` that goes into Q.
    fn round(&self, i: u8, num: u128) -> u128 {
        let mut block = [0u8; 16];
        block[..LAST_HEAD].copy_from_slice(&self.head);
        block[LAST_HEAD] = i;
        block[LAST_HEAD + 1..].copy_from_slice(&num.to_be_bytes()[16 - B_BYTES..]);
        xor_into(&mut block, &self.state);
        encrypt(&self.aes, &mut block);
        // d = 4 · ceil(b / 4) + 4 = 16: S is R itself.
        u128::from_be_bytes(block)
    }

    /// Both halves must be below radix^5.
    pub(super) fn encrypt(&self, (mut a, mut b): Halves) -> Halves {
        for i in 0..10 {
            let c = (a + self.round(i, b) % HALF_SPACE) % HALF_SPACE;
            a = b;
            b = c;
        }
        (a, b)
    }

    /// Both halves must be below radix^5.
    pub(super) fn decrypt(&self, (mut a, mut b): Halves) -> Halves {
        for i in (0..10).rev() {
            let c = (b + HALF_SPACE - self.round(i, a) % HALF_SPACE) % HALF_SPACE;
            b = a;
            a = c;
        }
        (a, b)
    }
}

/// Splits a number below radix^10 into its two halves.
pub(super) fn halves_of(number: u128) -> Halves {
    (number / HALF_SPACE, number % HALF_SPACE)
}

/// The number the two halves stand for, if it fits a `u128` (every packed input does).
pub(super) fn number_of((a, b): Halves) -> Option<u128> {
    a.checked_mul(HALF_SPACE)?.checked_add(b)
}

/// The numerals of the two halves, most significant first.
pub(super) fn numerals_of((a, b): Halves) -> [u16; 2 * HALF] {
    let mut numerals = [0u16; 2 * HALF];
    for (half, mut number) in [(0, a), (HALF, b)] {
        for numeral in numerals[half..half + HALF].iter_mut().rev() {
            *numeral = (number % RADIX) as u16;
            number /= RADIX;
        }
    }
    numerals
}

/// The halves of 10 numerals, or None if one is not below the radix.
pub(super) fn halves_from(numerals: &[u16; 2 * HALF]) -> Option<Halves> {
    let number = |digits: &[u16]| {
        digits.iter().try_fold(0u128, |n, &d| {
            (u128::from(d) < RADIX).then(|| n * RADIX + u128::from(d))
        })
    };
    Some((number(&numerals[..HALF])?, number(&numerals[HALF..])?))
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

    fn reference(key: &[u8; 32]) -> FF1<Aes256> {
        FF1::<Aes256>::new(key, RADIX as u32).unwrap_or_else(|_| unreachable!())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// Same codes as the general implementation, both ways, for any key and input.
        #[test]
        fn agrees_with_the_fpe_crate(
            key in any::<[u8; 32]>(),
            a in 0..HALF_SPACE,
            b in 0..HALF_SPACE,
            tweak in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let ours = Ff1::new(&key, &tweak);
            let theirs = reference(&key);
            let plain = numerals_of((a, b));
            let cipher = numerals_of(ours.encrypt((a, b)));
            let expected = theirs
                .encrypt(&tweak, &FlexibleNumeralString::from(plain.to_vec()))
                .unwrap_or_else(|e| panic!("{e:?}"));
            prop_assert_eq!(cipher.to_vec(), Vec::<u16>::from(expected));
            let back = ours.decrypt(halves_from(&cipher).unwrap_or_else(|| unreachable!()));
            prop_assert_eq!(numerals_of(back), plain);
        }
    }

    #[test]
    fn the_extremes_of_the_space_round_trip() {
        let ours = Ff1::new(&[7; 32], TWEAK);
        let top = HALF_SPACE - 1;
        for halves in [(0, 0), (0, 1), (0, top), (1, 0), (top, top)] {
            assert_eq!(ours.decrypt(ours.encrypt(halves)), halves);
            assert_eq!(halves_from(&numerals_of(halves)), Some(halves));
        }
        assert_eq!(halves_of(HALF_SPACE + 2), (1, 2));
        assert_eq!(number_of((1, 2)), Some(HALF_SPACE + 2));
        assert_eq!(number_of((top, top)), None);
        assert_eq!(halves_from(&[11_182, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
