//! The two code alphabets and their symbols (README, "Coupon codes").
//!
//! - **Full**: the 11,172 precomposed Hangul syllables (U+AC00..=U+D7A3) and the digits,
//!   radix 11,182 — the only alphabet before campaigns could choose one.
//! - **Readable**: the 140 syllables of one of the 14 plain initial consonants and one of
//!   the 10 basic vowels, with no final consonant, and the digits: radix 150. Each is one
//!   key and one key on the standard 2-set keyboard (no Shift), is read one way aloud
//!   (no final consonant whose sound merges with another's, no ㅐ/ㅔ-type vowel pairs
//!   spoken alike, no tense consonant heard as its plain one), and all are in KS X 1001.

use std::fmt;

/// Which symbols a campaign's codes are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeAlphabet {
    Readable,
    Full,
}

const HANGUL_FIRST: u32 = 0xAC00;
const HANGUL_COUNT: u32 = 11_172;
/// Syllable = HANGUL_FIRST + (initial · 21 + vowel) · 28 + final.
const VOWELS_PER_INITIAL: u32 = 21;
const FINALS_PER_VOWEL: u32 = 28;
/// ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎ among the 19 initial consonants (not ㄲㄸㅃㅆㅉ).
const READABLE_INITIALS: [u32; 14] = [0, 2, 3, 5, 6, 7, 9, 11, 12, 14, 15, 16, 17, 18];
/// ㅏㅑㅓㅕㅗㅛㅜㅠㅡㅣ among the 21 vowels.
const READABLE_VOWELS: [u32; 10] = [0, 2, 4, 6, 8, 12, 13, 17, 18, 20];
const READABLE_SYLLABLES: u16 = 140;

impl CodeAlphabet {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Readable => "readable",
            Self::Full => "full",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "readable" => Some(Self::Readable),
            "full" => Some(Self::Full),
            _ => None,
        }
    }

    /// How many symbols: the radix of the code's numerals.
    pub const fn radix(self) -> u16 {
        match self {
            Self::Readable => READABLE_SYLLABLES + 10,
            Self::Full => (HANGUL_COUNT + 10) as u16,
        }
    }

    /// The numeral `c` stands for, if `c` is one of this alphabet's symbols.
    pub fn symbol_of(self, c: char) -> Option<u16> {
        let scalar = c as u32;
        if c.is_ascii_digit() {
            return Some(self.radix() - 10 + (scalar - u32::from('0')) as u16);
        }
        let syllable = scalar
            .checked_sub(HANGUL_FIRST)
            .filter(|s| *s < HANGUL_COUNT)?;
        match self {
            Self::Full => u16::try_from(syllable).ok(),
            Self::Readable => readable_index(syllable),
        }
    }

    /// The symbol of numeral `n` (below the radix).
    pub fn char_of(self, n: u16) -> char {
        let digits_from = self.radix() - 10;
        let scalar = if n >= digits_from {
            u32::from('0') + u32::from(n - digits_from)
        } else {
            match self {
                Self::Full => HANGUL_FIRST + u32::from(n),
                Self::Readable => readable_syllable(n),
            }
        };
        char::from_u32(scalar).unwrap_or_else(|| {
            unreachable!("numerals below the radix are Hangul syllables or digits")
        })
    }
}

impl fmt::Display for CodeAlphabet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn readable_index(syllable: u32) -> Option<u16> {
    if !syllable.is_multiple_of(FINALS_PER_VOWEL) {
        return None;
    }
    let vowel = (syllable / FINALS_PER_VOWEL) % VOWELS_PER_INITIAL;
    let initial = syllable / (FINALS_PER_VOWEL * VOWELS_PER_INITIAL);
    let i = READABLE_INITIALS.iter().position(|&x| x == initial)?;
    let v = READABLE_VOWELS.iter().position(|&x| x == vowel)?;
    u16::try_from(i * READABLE_VOWELS.len() + v).ok()
}

fn readable_syllable(n: u16) -> u32 {
    let (i, v) = (
        usize::from(n) / READABLE_VOWELS.len(),
        usize::from(n) % READABLE_VOWELS.len(),
    );
    HANGUL_FIRST
        + (READABLE_INITIALS[i] * VOWELS_PER_INITIAL + READABLE_VOWELS[v]) * FINALS_PER_VOWEL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_round_trips_in_both_alphabets() {
        for alphabet in [CodeAlphabet::Readable, CodeAlphabet::Full] {
            for n in 0..alphabet.radix() {
                assert_eq!(alphabet.symbol_of(alphabet.char_of(n)), Some(n), "{n}");
            }
        }
    }

    #[test]
    fn the_readable_symbols_are_the_documented_ones() {
        let readable = CodeAlphabet::Readable;
        let syllables: String = (0..140).map(|n| readable.char_of(n)).collect();
        assert!(syllables.starts_with("가갸거겨고교구규그기나냐"));
        assert!(syllables.ends_with("호효후휴흐히"));
        assert_eq!(readable.char_of(140), '0');
        assert_eq!(readable.char_of(149), '9');
        for refused in ['각', '까', '개', '과', '의', 'A', 'ㄱ'] {
            assert_eq!(readable.symbol_of(refused), None, "{refused}");
        }
        let full = CodeAlphabet::Full;
        assert_eq!((full.char_of(0), full.char_of(11_171)), ('가', '힣'));
        assert_eq!((full.char_of(11_172), full.char_of(11_181)), ('0', '9'));
        assert_eq!(full.symbol_of('A'), None);
    }
}
