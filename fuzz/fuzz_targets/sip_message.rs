//! The SIP message parser the endpoint uses: normalisation (compact forms, folded lines,
//! header names) and then rsip, through `check_syntax`; and `normalize` on its own, whose
//! output must be stable (normalising twice changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chorus_sip::check_syntax(data);
    if let Ok(once) = chorus_sip::normalize(data) {
        let twice = chorus_sip::normalize(&once).expect("normalised output normalises again");
        assert_eq!(once, twice, "normalize is idempotent");
    }
});
