//! What the fuzz targets check of a successful parse, beyond "no panic".

use arrears::money::MAX_AMOUNT;
use arrears::statement::StatementFile;

/// Every amount a statement parser accepts is within the bound all entry points
/// enforce, so matching and booking can never overflow on it.
pub fn check_statement(f: &StatementFile) {
    for s in &f.statements {
        for b in s.opening.iter().chain(&s.closing) {
            assert!(b.amount.abs() <= MAX_AMOUNT, "{b:?}");
        }
        for e in &s.entries {
            assert!(e.amount.abs() <= MAX_AMOUNT, "{e:?}");
            for t in &e.transactions {
                assert!(t.amount.is_none_or(|a| a.abs() <= MAX_AMOUNT), "{t:?}");
            }
        }
    }
}
