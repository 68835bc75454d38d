//! G.711 µ-law and A-law (ITU-T G.711) through lookup tables.
//!
//! The sample conversions themselves come from the `ezk-g711` crate; we tabulate them once so
//! a 20 ms frame costs 160 table reads. Both laws drop the low bits of a 16-bit sample (µ-law
//! keeps 14, A-law 13), so a 14-bit index (`sample >> 2`) reproduces the crate's encoder
//! exactly for every input.

use std::sync::LazyLock;

/// Which companding law a G.711 leg uses: PCMU (payload type 0) or PCMA (payload type 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    Mu,
    A,
}

struct Tables {
    encode: [Box<[u8; 1 << 14]>; 2],
    decode: [[i16; 256]; 2],
    /// The square of each byte's sample (at most 32,256², A-law's largest, so a u32 holds it).
    square: [[u32; 256]; 2],
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let mut mu = Box::new([0u8; 1 << 14]);
    let mut a = Box::new([0u8; 1 << 14]);
    let mut decode = [[0i16; 256]; 2];
    let mut square = [[0u32; 256]; 2];
    for (index, (mu, a)) in mu.iter_mut().zip(a.iter_mut()).enumerate() {
        // Lowest sample of this index: the laws only look at the bits above the two dropped.
        let sample = ((index as u16) << 2) as i16;
        *mu = ezk_g711::mulaw::encode(sample);
        *a = ezk_g711::alaw::encode(sample);
    }
    for byte in 0..=255u8 {
        decode[0][byte as usize] = ezk_g711::mulaw::decode(byte);
        decode[1][byte as usize] = ezk_g711::alaw::decode(byte);
        for law in 0..2 {
            square[law][byte as usize] =
                u32::from(decode[law][byte as usize].unsigned_abs()).pow(2);
        }
    }
    Tables {
        encode: [mu, a],
        decode,
        square,
    }
});

impl Law {
    /// RFC 3551 §6 static payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Mu => 0,
            Law::A => 8,
        }
    }

    /// The byte that decodes to (near) zero: what a silent frame is made of.
    pub fn silence(self) -> u8 {
        match self {
            Law::Mu => 0xFF,
            Law::A => 0xD5,
        }
    }

    fn slot(self) -> usize {
        match self {
            Law::Mu => 0,
            Law::A => 1,
        }
    }

    /// Forces the tables to be built now, so the first tick of a media thread doesn't.
    pub fn warm_up() {
        LazyLock::force(&TABLES);
    }

    #[inline]
    pub fn encode_sample(self, sample: i16) -> u8 {
        let index = ((sample as u16) >> 2) as usize;
        TABLES.encode[self.slot()][index]
    }

    #[inline]
    pub fn decode_sample(self, byte: u8) -> i16 {
        TABLES.decode[self.slot()][byte as usize]
    }

    /// Encodes `min(pcm.len(), out.len())` samples.
    pub fn encode(self, pcm: &[i16], out: &mut [u8]) {
        let table = &TABLES.encode[self.slot()];
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = table[((s as u16) >> 2) as usize];
        }
    }

    /// Decodes `min(bytes.len(), out.len())` samples.
    pub fn decode(self, bytes: &[u8], out: &mut [i16]) {
        let table = &TABLES.decode[self.slot()];
        for (o, &b) in out.iter_mut().zip(bytes) {
            *o = table[b as usize];
        }
    }

    /// Sum of the squares of the samples `bytes` decode to, without writing them anywhere:
    /// what a talker detector needs of a quiet member's frame.
    pub fn energy(self, bytes: &[u8]) -> u64 {
        let table = &TABLES.square[self.slot()];
        let square = |b: u8| u64::from(table[b as usize]);
        let mut chunks = bytes.chunks_exact(4);
        // Four independent table reads per step, one add chain.
        let mut total = 0u64;
        for c in &mut chunks {
            total += (square(c[0]) + square(c[1])) + (square(c[2]) + square(c[3]));
        }
        total + chunks.remainder().iter().map(|&b| square(b)).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_is_the_sum_of_squares_of_the_decoded_samples() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        for law in [Law::Mu, Law::A] {
            let mut pcm = vec![0i16; bytes.len()];
            law.decode(&bytes, &mut pcm);
            let expected: u64 = pcm
                .iter()
                .map(|&s| (i64::from(s) * i64::from(s)) as u64)
                .sum();
            assert_eq!(law.energy(&bytes), expected, "{law:?}");
            assert_eq!(
                law.energy(&[law.silence(); 160]),
                160 * {
                    let s = i64::from(law.decode_sample(law.silence()));
                    (s * s) as u64
                }
            );
        }
    }

    #[test]
    fn tables_match_the_reference_encoder_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(
                Law::Mu.encode_sample(s),
                ezk_g711::mulaw::encode(s),
                "mu {s}"
            );
            assert_eq!(Law::A.encode_sample(s), ezk_g711::alaw::encode(s), "A {s}");
        }
    }

    #[test]
    fn round_trip_error_is_within_the_companding_step() {
        for law in [Law::Mu, Law::A] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let back = law.decode_sample(law.encode_sample(s)) as i32;
                let err = (back - s as i32).abs();
                // The largest segment of both laws quantises in steps of 1024 (µ) / 1024 (A).
                assert!(err <= 1024, "{law:?} {s} -> {back}");
                // Relative error stays within ~7 % above the first segments.
                if (s as i32).abs() > 512 {
                    assert!(err * 100 <= (s as i32).abs() * 7, "{law:?} {s} -> {back}");
                }
            }
        }
    }

    #[test]
    fn silence_byte_decodes_to_near_zero() {
        for law in [Law::Mu, Law::A] {
            assert!(law.decode_sample(law.silence()).abs() <= 8);
            assert_eq!(law.encode_sample(0), law.silence());
        }
    }
}
