//! The XML call-flow parser (`chorus_flow::parse`) on any UTF-8 text, and on any bytes read
//! lossily as the webhook client does with a body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => {
            let _ = chorus_flow::parse(text);
        }
        Err(_) => {
            let _ = chorus_flow::parse(&String::from_utf8_lossy(data));
        }
    }
});
