//! Coupon codes: 10 symbols of the campaign's alphabet (Hangul syllables and digits).
//!
//! A code is the FF1 format-preserving encryption, under the deployment's secret key, of
//! the number (campaign origin partition, campaign origin offset, ordinal) written in the
//! alphabet's radix. FF1 is a permutation of the 10-symbol space, and distinct numbers go
//! in, so codes are unique across all campaigns by construction; without the key they
//! are not guessable from one another; with it, a code decrypts back to its campaign
//! and ordinal. The same log replayed gives the same numbers, hence the same codes.
//!
//! The two alphabets' codes are kept apart by construction too. A code is *readable-
//! shaped* when all its symbols are readable ones and it does not start with 가가.
//! Readable codes are exactly those; full codes never are: each alphabet cycle-walks
//! (encrypts again) until its code has its own shape. A walk is a bijection onto that
//! shape because every input already has it: full inputs are below 2^96, so their two
//! first numerals are 0 (가가); readable inputs are offset by 150^9, so their first is
//! not. Full codes issued before the walk existed were readable-shaped with a chance of
//! (150/11,182)^10 ≈ 10^-19 each: their walks stop at the first step, so they stay the
//! codes already handed out (the test vectors below).

mod alphabet;
mod ff1;

use std::fmt;

pub use alphabet::CodeAlphabet;

use super::log::LogPosition;
use super::secret::SecretKey;

pub const CODE_LEN: usize = 10;
const TWEAK: &[u8] = b"coupon.v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("log position {0:?} is beyond the code space")]
    PositionOutOfRange(LogPosition),
    #[error("ordinal {0} is beyond the code space")]
    OrdinalOutOfRange(u64),
    #[error("code must be {CODE_LEN} Hangul syllables or digits")]
    Malformed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CouponCode(String);

impl CouponCode {
    /// Accepts only well-formed codes (of either alphabet); used when reading codes back
    /// from storage.
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        // Counted, not collected: pages of 10,000 codes are parsed back from storage.
        let mut len = 0;
        let well_formed = raw.chars().all(|c| {
            len += 1;
            CodeAlphabet::Full.symbol_of(c).is_some()
        });
        if well_formed && len == CODE_LEN {
            Ok(Self(raw.to_owned()))
        } else {
            Err(CodeError::Malformed)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The alphabet this code was made in (the two never share a code).
    pub fn alphabet(&self) -> CodeAlphabet {
        let mut numerals = [0u16; CODE_LEN];
        for (numeral, c) in numerals.iter_mut().zip(self.0.chars()) {
            *numeral = CodeAlphabet::Full.symbol_of(c).unwrap_or(0);
        }
        shape_of(CodeAlphabet::Full, &numerals)
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when `code` has the public shape of a coupon code (DESIGN §5.2).
pub fn is_well_formed(code: &str) -> bool {
    CouponCode::parse(code).is_ok()
}

/// The alphabet whose shape the numerals (of `alphabet`) have: readable-shaped codes
/// are the readable alphabet's, every other code the full one's.
fn shape_of(alphabet: CodeAlphabet, numerals: &[u16; CODE_LEN]) -> CodeAlphabet {
    let starts_with_ga_ga = numerals[0] == 0 && numerals[1] == 0;
    let all_readable = alphabet == CodeAlphabet::Readable
        || numerals.iter().all(|&n| {
            CodeAlphabet::Readable
                .symbol_of(alphabet.char_of(n))
                .is_some()
        });
    if all_readable && !starts_with_ga_ga {
        CodeAlphabet::Readable
    } else {
        CodeAlphabet::Full
    }
}

/// How (origin, ordinal) is packed into a number the alphabet's space holds.
struct Layout {
    partition_bits: u32,
    offset_bits: u32,
    ordinal_bits: u32,
    /// Added to every packed number (see the module's comment).
    base: u128,
}

impl CodeAlphabet {
    fn layout(self) -> Layout {
        match self {
            // 96 bits < 11,182^10 ≈ 2^134.
            Self::Full => Layout {
                partition_bits: 16,
                offset_bits: 48,
                ordinal_bits: 32,
                base: 0,
            },
            // 2^72 + 150^9 < 150^10 ≈ 2^72.3.
            Self::Readable => Layout {
                partition_bits: 8,
                offset_bits: 40,
                ordinal_bits: 24,
                base: 150u128.pow(9),
            },
        }
    }

    /// Whether a campaign created at `origin` can have codes in this alphabet.
    pub fn holds(self, origin: LogPosition) -> bool {
        self.layout().pack(origin, 1).is_ok()
    }

    /// The most coupons one campaign may have in this alphabet (before the service's
    /// own cap, `MAX_TOTAL_COUPONS`).
    pub fn max_ordinal(self) -> u64 {
        (1 << self.layout().ordinal_bits) - 1
    }
}

impl Layout {
    fn pack(&self, origin: LogPosition, ordinal: u64) -> Result<u128, CodeError> {
        if origin.offset >= 1 << self.offset_bits || origin.partition >= 1 << self.partition_bits {
            return Err(CodeError::PositionOutOfRange(origin));
        }
        if ordinal >= 1 << self.ordinal_bits {
            return Err(CodeError::OrdinalOutOfRange(ordinal));
        }
        let low_bits = self.offset_bits + self.ordinal_bits;
        Ok(self.base
            + ((u128::from(origin.partition) << low_bits)
                | (u128::from(origin.offset) << self.ordinal_bits)
                | u128::from(ordinal)))
    }

    fn unpack(&self, number: u128) -> Option<(LogPosition, u64)> {
        let number = number.checked_sub(self.base)?;
        let low_bits = self.offset_bits + self.ordinal_bits;
        let partition = u32::try_from(number >> low_bits).ok()?;
        if partition >= 1 << self.partition_bits {
            return None;
        }
        let offset = ((number >> self.ordinal_bits) & ((1 << self.offset_bits) - 1)) as u64;
        let ordinal = (number & ((1 << self.ordinal_bits) - 1)) as u64;
        Some((LogPosition { partition, offset }, ordinal))
    }
}

pub struct CodeGenerator {
    full: ff1::Ff1,
    readable: ff1::Ff1,
}

impl CodeGenerator {
    pub fn new(secret: &SecretKey) -> Self {
        let key = secret.derive("coupon.v1 code ff1");
        Self {
            full: ff1::Ff1::new(&key, TWEAK, CodeAlphabet::Full.radix()),
            readable: ff1::Ff1::new(&key, TWEAK, CodeAlphabet::Readable.radix()),
        }
    }

    fn ff1(&self, alphabet: CodeAlphabet) -> &ff1::Ff1 {
        match alphabet {
            CodeAlphabet::Full => &self.full,
            CodeAlphabet::Readable => &self.readable,
        }
    }

    /// The code of the `ordinal`-th coupon (1-based) of the campaign created at `origin`.
    pub fn code_for(
        &self,
        alphabet: CodeAlphabet,
        origin: LogPosition,
        ordinal: u64,
    ) -> Result<CouponCode, CodeError> {
        let ff1 = self.ff1(alphabet);
        let mut halves = ff1.halves_of(alphabet.layout().pack(origin, ordinal)?);
        // The cycle walk: almost always one step (module comment).
        let numerals = loop {
            halves = ff1.encrypt(halves);
            let numerals = ff1.numerals_of(halves);
            if shape_of(alphabet, &numerals) == alphabet {
                break numerals;
            }
        };
        Ok(CouponCode(
            numerals.into_iter().map(|n| alphabet.char_of(n)).collect(),
        ))
    }

    /// Which campaign origin and ordinal a code stands for (audits and tests).
    pub fn decode(&self, code: &CouponCode) -> Result<(LogPosition, u64), CodeError> {
        let alphabet = code.alphabet();
        let mut numerals = [0u16; CODE_LEN];
        let mut chars = code.0.chars();
        for numeral in &mut numerals {
            *numeral = chars
                .next()
                .and_then(|c| alphabet.symbol_of(c))
                .ok_or(CodeError::Malformed)?;
        }
        if chars.next().is_some() {
            return Err(CodeError::Malformed);
        }
        let ff1 = self.ff1(alphabet);
        let mut halves = ff1.halves_from(&numerals).ok_or(CodeError::Malformed)?;
        loop {
            halves = ff1.decrypt(halves);
            if shape_of(alphabet, &ff1.numerals_of(halves)) == alphabet {
                break;
            }
        }
        // A walk's inputs have its alphabet's shape and the steps between do not: the
        // walk back stops at the input, the packed number.
        let number = ff1.number_of(halves).ok_or(CodeError::Malformed)?;
        alphabet.layout().unpack(number).ok_or(CodeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    const BOTH: [CodeAlphabet; 2] = [CodeAlphabet::Readable, CodeAlphabet::Full];

    fn generator() -> CodeGenerator {
        CodeGenerator::new(
            &SecretKey::from_hex(&"07".repeat(32)).unwrap_or_else(|_| unreachable!()),
        )
    }

    fn at(partition: u32, offset: u64) -> LogPosition {
        LogPosition { partition, offset }
    }

    #[test]
    fn well_formed_means_hangul_syllables_and_digits() {
        assert!(!is_well_formed("ABCDEFGHIJ"));
        assert!(!is_well_formed("가나다"));
        assert!(is_well_formed("가나다라마바사아자0"));
        assert!(is_well_formed("괕쵏쭛룫꽫띮용뤮틶솓"));
    }

    /// Codes of 32 campaigns × 20,000 coupons in each alphabet: 1,280,000 codes, each
    /// once, each of its alphabet's shape, so the two alphabets never meet.
    #[test]
    fn codes_are_unique_across_campaigns_ordinals_and_alphabets() {
        let generator = generator();
        let mut seen = HashSet::new();
        for alphabet in BOTH {
            for campaign in 0..32u64 {
                let origin = at((campaign % 4) as u32, campaign * 7);
                for ordinal in 1..=20_000 {
                    let code = generator
                        .code_for(alphabet, origin, ordinal)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert!(is_well_formed(code.as_str()), "{code}");
                    assert_eq!(code.alphabet(), alphabet, "{code}");
                    assert!(seen.insert(code), "duplicate code");
                }
            }
        }
    }

    /// Replaying a log must give the codes it gave before, whatever the implementation:
    /// these full codes were made by the `fpe` crate's FF1, which the service used first.
    #[test]
    fn full_codes_are_the_ones_issued_before() {
        let g = generator();
        let full = CodeAlphabet::Full;
        assert_eq!(
            g.code_for(full, at(0, 0), 1).map(|c| c.to_string()),
            Ok("쯥뗵읅벷퍃훨릥헡뽉쪧".to_owned())
        );
        assert_eq!(
            g.code_for(full, at(3, 123_456), 99_999)
                .map(|c| c.to_string()),
            Ok("끭늑죔슮픅찮꾏쳸뎅튵".to_owned())
        );
    }

    /// Readable codes are pinned too: a change of symbols or packing would change the
    /// codes a replay gives for campaigns already out there.
    #[test]
    fn readable_codes_are_pinned() {
        let g = generator();
        let readable = CodeAlphabet::Readable;
        let codes: Vec<String> = [(at(0, 0), 1), (at(3, 123_456), 99_999)]
            .into_iter()
            .map(|(origin, ordinal)| {
                g.code_for(readable, origin, ordinal)
                    .map(|c| c.to_string())
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        assert_eq!(codes, READABLE_VECTORS);
    }

    const READABLE_VECTORS: [&str; 2] = ["6으뇨22시트후부묘", "므수보히로초하뵤터야"];

    #[test]
    fn codes_depend_on_the_key() {
        let other = CodeGenerator::new(&SecretKey::generate());
        for alphabet in BOTH {
            assert_ne!(
                generator().code_for(alphabet, at(0, 0), 1),
                other.code_for(alphabet, at(0, 0), 1)
            );
        }
    }

    #[test]
    fn out_of_range_inputs_are_refused() {
        let g = generator();
        let full = CodeAlphabet::Full;
        assert!(g.code_for(full, at(0, 1 << 48), 1).is_err());
        assert!(g.code_for(full, at(70_000, 0), 1).is_err());
        assert!(g.code_for(full, at(0, 0), 1 << 32).is_err());
        let readable = CodeAlphabet::Readable;
        assert!(g.code_for(readable, at(0, 1 << 40), 1).is_err());
        assert!(g.code_for(readable, at(256, 0), 1).is_err());
        assert!(g.code_for(readable, at(0, 0), 1 << 24).is_err());
        assert!(readable.holds(at(255, (1 << 40) - 1)));
        assert!(!readable.holds(at(256, 0)));
        assert_eq!(readable.max_ordinal(), 16_777_215);
        assert!(readable.max_ordinal() >= crate::domain::campaign::MAX_TOTAL_COUPONS);
    }

    proptest! {
        #[test]
        fn full_codes_are_deterministic_well_formed_and_reversible(
            partition in 0u32..=65_535,
            offset in 0u64..(1 << 48),
            ordinal in 0u64..(1 << 32),
        ) {
            round_trips(CodeAlphabet::Full, at(partition, offset), ordinal)?;
        }

        #[test]
        fn readable_codes_are_deterministic_well_formed_and_reversible(
            partition in 0u32..256,
            offset in 0u64..(1 << 40),
            ordinal in 0u64..(1 << 24),
        ) {
            round_trips(CodeAlphabet::Readable, at(partition, offset), ordinal)?;
        }
    }

    fn round_trips(
        alphabet: CodeAlphabet,
        origin: LogPosition,
        ordinal: u64,
    ) -> Result<(), TestCaseError> {
        let g = generator();
        let code = g
            .code_for(alphabet, origin, ordinal)
            .unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(code.as_str().chars().count(), CODE_LEN);
        prop_assert!(is_well_formed(code.as_str()));
        prop_assert_eq!(code.alphabet(), alphabet);
        prop_assert_eq!(
            Some(code.clone()),
            g.code_for(alphabet, origin, ordinal).ok()
        );
        prop_assert_eq!(g.decode(&code).ok(), Some((origin, ordinal)));
        Ok(())
    }

    /// The walk itself: a readable number whose first encryption starts with 가가 is
    /// encrypted again, and decoding walks back over it.
    #[test]
    fn walks_skip_the_other_alphabets_shape_and_back() {
        let g = generator();
        let readable = CodeAlphabet::Readable;
        let ff1 = g.ff1(readable);
        // Find an input whose first step lands on 가가… (1 in 22,500).
        let walked = (1..200_000u64)
            .find(|&ordinal| {
                let number = readable.layout().pack(at(0, 0), ordinal).unwrap_or(0);
                let first = ff1.numerals_of(ff1.encrypt(ff1.halves_of(number)));
                shape_of(readable, &first) != readable
            })
            .unwrap_or_else(|| panic!("no walk in 200,000 ordinals"));
        let code = g
            .code_for(readable, at(0, 0), walked)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code.alphabet(), readable);
        assert_eq!(g.decode(&code), Ok((at(0, 0), walked)));
    }
}
