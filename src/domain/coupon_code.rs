//! Coupon codes: 10 symbols, each a Hangul syllable (U+AC00..=U+D7A3) or a digit.
//!
//! A code is the FF1 format-preserving encryption, under the deployment's secret key, of
//! the number (campaign origin partition, campaign origin offset, ordinal) written in
//! radix 11,182. FF1 is a permutation of the 10-symbol space, and distinct numbers go
//! in, so codes are unique across all campaigns by construction; without the key they
//! are not guessable from one another; with it, a code decrypts back to its campaign
//! and ordinal. The same log replayed gives the same numbers, hence the same codes.

mod ff1;

use std::fmt;

use super::log::LogPosition;
use super::secret::SecretKey;

pub const CODE_LEN: usize = 10;
const HANGUL_FIRST: u32 = 0xAC00;
const HANGUL_COUNT: u32 = 11_172;
const RADIX: u32 = HANGUL_COUNT + 10;
const OFFSET_BITS: u32 = 48;
const ORDINAL_BITS: u32 = 32;
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
    /// Accepts only well-formed codes; used when reading codes back from storage.
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        // Counted, not collected: pages of 10,000 codes are parsed back from storage.
        let mut len = 0;
        let well_formed = raw.chars().all(|c| {
            len += 1;
            symbol_of(c).is_some()
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

fn symbol_of(c: char) -> Option<u16> {
    let c = c as u32;
    let index = match c {
        _ if (HANGUL_FIRST..HANGUL_FIRST + HANGUL_COUNT).contains(&c) => c - HANGUL_FIRST,
        0x30..=0x39 => HANGUL_COUNT + (c - 0x30),
        _ => return None,
    };
    u16::try_from(index).ok()
}

fn char_of(symbol: u16) -> char {
    let symbol = u32::from(symbol);
    let scalar = if symbol < HANGUL_COUNT {
        HANGUL_FIRST + symbol
    } else {
        0x30 + (symbol - HANGUL_COUNT)
    };
    char::from_u32(scalar).unwrap_or_else(|| {
        unreachable!("symbols below RADIX are Hangul syllables or ASCII digits, never surrogates")
    })
}

pub struct CodeGenerator {
    ff1: ff1::Ff1,
}

impl CodeGenerator {
    pub fn new(secret: &SecretKey) -> Self {
        let key = secret.derive("coupon.v1 code ff1");
        Self {
            ff1: ff1::Ff1::new(&key, TWEAK),
        }
    }

    /// The code of the `ordinal`-th coupon (1-based) of the campaign created at `origin`.
    pub fn code_for(&self, origin: LogPosition, ordinal: u64) -> Result<CouponCode, CodeError> {
        let number = pack(origin, ordinal)?;
        let cipher = self.ff1.encrypt(ff1::halves_of(number));
        Ok(CouponCode(
            ff1::numerals_of(cipher).into_iter().map(char_of).collect(),
        ))
    }

    /// Which campaign origin and ordinal a code stands for (audits and tests).
    pub fn decode(&self, code: &CouponCode) -> Result<(LogPosition, u64), CodeError> {
        let mut numerals = [0u16; CODE_LEN];
        let mut chars = code.0.chars();
        for numeral in &mut numerals {
            *numeral = chars
                .next()
                .and_then(symbol_of)
                .ok_or(CodeError::Malformed)?;
        }
        if chars.next().is_some() {
            return Err(CodeError::Malformed);
        }
        let cipher = ff1::halves_from(&numerals).ok_or(CodeError::Malformed)?;
        // A code made by `code_for` decrypts to a packed number, below 2^96.
        let number = ff1::number_of(self.ff1.decrypt(cipher)).ok_or(CodeError::Malformed)?;
        unpack(number).ok_or(CodeError::Malformed)
    }
}

fn pack(origin: LogPosition, ordinal: u64) -> Result<u128, CodeError> {
    if origin.offset >= 1 << OFFSET_BITS || origin.partition > u32::from(u16::MAX) {
        return Err(CodeError::PositionOutOfRange(origin));
    }
    if ordinal >= 1 << ORDINAL_BITS {
        return Err(CodeError::OrdinalOutOfRange(ordinal));
    }
    Ok(
        (u128::from(origin.partition) << (OFFSET_BITS + ORDINAL_BITS))
            | (u128::from(origin.offset) << ORDINAL_BITS)
            | u128::from(ordinal),
    )
}

fn unpack(number: u128) -> Option<(LogPosition, u64)> {
    let partition = u32::try_from(number >> (OFFSET_BITS + ORDINAL_BITS)).ok()?;
    if partition > u32::from(u16::MAX) {
        return None;
    }
    let offset = ((number >> ORDINAL_BITS) & ((1 << OFFSET_BITS) - 1)) as u64;
    let ordinal = (number & ((1 << ORDINAL_BITS) - 1)) as u64;
    Some((LogPosition { partition, offset }, ordinal))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn generator() -> CodeGenerator {
        CodeGenerator::new(
            &SecretKey::from_hex(&"07".repeat(32)).unwrap_or_else(|_| unreachable!()),
        )
    }

    #[test]
    fn symbols_cover_hangul_and_digits_only() {
        assert_eq!(char_of(0), '가');
        assert_eq!(char_of(11_171), '힣');
        assert_eq!(char_of(11_172), '0');
        assert_eq!(char_of(11_181), '9');
        for s in 0..RADIX as u16 {
            assert_eq!(symbol_of(char_of(s)), Some(s));
        }
        assert!(!is_well_formed("ABCDEFGHIJ"));
        assert!(!is_well_formed("가나다"));
        assert!(is_well_formed("가나다라마바사아자0"));
    }

    #[test]
    fn codes_are_unique_across_campaigns_and_ordinals() {
        let generator = generator();
        let mut seen = HashSet::new();
        // 64 campaigns on 4 partitions × 20,000 coupons = 1,280,000 codes.
        for campaign in 0..64u64 {
            let origin = LogPosition {
                partition: (campaign % 4) as u32,
                offset: campaign * 7,
            };
            for ordinal in 1..=20_000 {
                let code = generator
                    .code_for(origin, ordinal)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(is_well_formed(code.as_str()), "{code}");
                assert!(seen.insert(code), "duplicate code");
            }
        }
    }

    /// Replaying a log must give the codes it gave before, whatever the implementation:
    /// these were made by the `fpe` crate's FF1, which the service used first.
    #[test]
    fn codes_are_the_ones_issued_before() {
        let g = generator();
        let at = |partition, offset| LogPosition { partition, offset };
        assert_eq!(
            g.code_for(at(0, 0), 1).map(|c| c.to_string()),
            Ok("쯥뗵읅벷퍃훨릥헡뽉쪧".to_owned())
        );
        assert_eq!(
            g.code_for(at(3, 123_456), 99_999).map(|c| c.to_string()),
            Ok("끭늑죔슮픅찮꾏쳸뎅튵".to_owned())
        );
    }

    #[test]
    fn codes_depend_on_the_key() {
        let other = CodeGenerator::new(&SecretKey::generate());
        let origin = LogPosition {
            partition: 0,
            offset: 0,
        };
        assert_ne!(generator().code_for(origin, 1), other.code_for(origin, 1));
    }

    #[test]
    fn out_of_range_inputs_are_refused() {
        let g = generator();
        assert!(
            g.code_for(
                LogPosition {
                    partition: 0,
                    offset: 1 << 48
                },
                1
            )
            .is_err()
        );
        assert!(
            g.code_for(
                LogPosition {
                    partition: 70_000,
                    offset: 0
                },
                1
            )
            .is_err()
        );
        assert!(
            g.code_for(
                LogPosition {
                    partition: 0,
                    offset: 0
                },
                1 << 32
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn codes_are_deterministic_well_formed_and_reversible(
            partition in 0u32..=65_535,
            offset in 0u64..(1 << 48),
            ordinal in 0u64..(1 << 32),
        ) {
            let g = generator();
            let origin = LogPosition { partition, offset };
            let code = g.code_for(origin, ordinal).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(code.as_str().chars().count(), CODE_LEN);
            prop_assert!(is_well_formed(code.as_str()));
            prop_assert_eq!(Some(code.clone()), g.code_for(origin, ordinal).ok());
            prop_assert_eq!(g.decode(&code).ok(), Some((origin, ordinal)));
        }
    }
}
