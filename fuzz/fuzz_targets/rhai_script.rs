//! A Rhai script in `rules/scripts/`, compiled by the project's own loader
//! (`rules::script::compile` on the engine `build_engine` sets up, limits included).
//! Compiling only: running hooks is `rhai_hooks`.
#![no_main]

use std::sync::OnceLock;

use arrears::rules::script;
use libfuzzer_sys::fuzz_target;
use rhai::Engine;

fn setup() -> &'static (Engine, tempfile::TempDir) {
    static S: OnceLock<(Engine, tempfile::TempDir)> = OnceLock::new();
    S.get_or_init(|| (script::build_engine(), tempfile::tempdir().unwrap()))
}

fuzz_target!(|data: &[u8]| {
    // The loader reads the file as UTF-8 and stops there otherwise.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let (engine, dir) = setup();
    std::fs::write(dir.path().join("fuzz.rhai"), data).unwrap();
    let _ = script::compile(engine, dir.path(), "fuzz.rhai");
});
