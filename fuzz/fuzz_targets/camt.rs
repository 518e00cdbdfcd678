//! `arrears import statement` on camt.053 / camt.054 XML (the format is sniffed
//! from the content, so an input that stops looking like XML reaches MT940 too);
//! what it accepts must stay within the amount bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = arrears::statement::parse(data, "fuzz.xml", None) {
        arrears_fuzz::check_statement(&f);
    }
});
