//! `arrears import statement` on MT940, read the three ways a file can be decoded:
//! sniffed (UTF-8, else Latin-1), strict UTF-8, and a DOS code page; what it
//! accepts must stay within the amount bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for encoding in [None, Some("utf-8"), Some("cp852")] {
        if let Ok(f) = arrears::statement::parse(data, "fuzz.sta", encoding) {
            arrears_fuzz::check_statement(&f);
        }
    }
});
