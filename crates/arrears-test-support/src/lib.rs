//! What the tests of the application, the server and the command line need again and
//! again, written once. The pure crates below the store keep their own one-line date
//! helpers: depending on this crate would make every engine edit rebuild the store.

#[cfg(feature = "daemon")]
pub mod daemon;

use std::path::PathBuf;

use arrears_rules::RuleSet;
use chrono::NaiveDate;

/// A date written the way tests read best; a typo fails the test at once.
pub fn d(s: &str) -> NaiveDate {
    s.parse().unwrap_or_else(|e| panic!("test date {s:?}: {e}"))
}

/// The repository's top folder, wherever the test runs from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `rules/` folder shipped with Arrears: the policy the README documents.
pub fn rules_dir() -> PathBuf {
    repo_root().join("rules")
}

/// The shipped rules, loaded and validated.
pub fn shipped_rules() -> RuleSet {
    arrears_rules::load(&rules_dir()).unwrap_or_else(|e| panic!("shipped rules: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_are_found_from_this_crate() {
        assert!(rules_dir().join("policy.yaml").is_file());
        let r = shipped_rules();
        assert!(
            !r.groups.is_empty(),
            "the shipped policy has collector groups"
        );
        assert!(r.templates.is_some() && r.agreements.is_some());
    }

    #[test]
    #[should_panic(expected = "test date")]
    fn a_bad_date_fails_loudly() {
        d("2026-13-01");
    }
}
