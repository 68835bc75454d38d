//! The N-1 mix kernels: sum every contribution in `i32`, subtract the listener's own, clamp
//! once (the order of addends never changes the result, unlike clamping per addend).

/// Adds `frame` into the 32-bit accumulator.
#[inline]
pub fn accumulate(total: &mut [i32], frame: &[i16]) {
    for (t, &s) in total.iter_mut().zip(frame) {
        *t += i32::from(s);
    }
}

/// What one listener hears: the room total minus its own contribution, clamped once.
#[inline]
pub fn minus_own(total: &[i32], own: &[i16], out: &mut [i16]) {
    for ((o, &t), &s) in out.iter_mut().zip(total).zip(own) {
        *o = clamp(t - i32::from(s));
    }
}

/// The whole room total, clamped: what every listener that contributes nothing hears.
#[inline]
pub fn clamp_total(total: &[i32], out: &mut [i16]) {
    for (o, &t) in out.iter_mut().zip(total) {
        *o = clamp(t);
    }
}

#[inline]
fn clamp(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_hears_everyone_but_itself() {
        let a = [100i16; 4];
        let b = [20i16; 4];
        let c = [3i16; 4];
        let mut total = [0i32; 4];
        for f in [&a, &b, &c] {
            accumulate(&mut total, f);
        }
        let mut out = [0i16; 4];
        minus_own(&total, &a, &mut out);
        assert_eq!(out, [23; 4]);
        minus_own(&total, &c, &mut out);
        assert_eq!(out, [120; 4]);
    }

    #[test]
    fn clamping_happens_once_after_the_sum() {
        // Two loud members and one opposite: clamping per addend would leave member C hearing
        // a clipped 32767 + ... and member A hearing a wrong value; clamping once is exact.
        let a = [30_000i16];
        let b = [30_000i16];
        let c = [-30_000i16];
        let mut total = [0i32];
        for f in [&a, &b, &c] {
            accumulate(&mut total, f);
        }
        let mut out = [0i16];
        minus_own(&total, &a, &mut out);
        assert_eq!(out, [0], "A hears B + C = 0");
        minus_own(&total, &c, &mut out);
        assert_eq!(out, [i16::MAX], "C hears A + B clipped once");
        clamp_total(&total, &mut out);
        assert_eq!(out, [30_000]);
    }
}
