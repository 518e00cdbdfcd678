//! `arrears import statement` on MT940, read the three ways a file can be decoded:
//! sniffed (UTF-8, else Latin-1), strict UTF-8, and a DOS code page.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for encoding in [None, Some("utf-8"), Some("cp852")] {
        let _ = arrears::statement::parse(data, "fuzz.sta", encoding);
    }
});
