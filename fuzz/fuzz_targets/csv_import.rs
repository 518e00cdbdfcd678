//! `arrears import csv`: any bytes, as the file a user hands the importer.
#![no_main]

use std::path::Path;

use arrears::money::MAX_AMOUNT;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = arrears::import::parse_csv_from(data, Path::new("fuzz.csv"), "fuzz") else {
        return;
    };
    // What the module documents of every accepted item; a row that breaks it would
    // be stored and poison later runs.
    for i in &parsed.batch.items {
        assert!(i.open_amount <= i.original_amount, "{i:?}");
        assert!(i.original_amount <= MAX_AMOUNT, "{i:?}");
        assert!(i.due_date >= i.document_date, "{i:?}");
    }
    for p in &parsed.batch.payments {
        assert!(p.amount.abs() <= MAX_AMOUNT, "{p:?}");
    }
    assert_eq!(parsed.errors.is_empty(), parsed.rejected.is_empty());
});
