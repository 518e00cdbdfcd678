//! `arrears check` / the daemon's rules reload on a rules folder an admin edited:
//! a copy of the project's own `rules/` in which one file is replaced by the input.
//! The first byte picks the file (modulo the number of candidates), the rest is its
//! content, so the other files stay valid and validation reaches cross-file checks.
//! A YAML pick is loaded without `templates/`: compiling every template on each
//! input made this target ~10x slower, and the loader simply skips the template
//! checks when the folder has none. Picking the template loads the full folder.
#![no_main]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");

struct Folder {
    _dir: tempfile::TempDir,
    /// The full copy, and one without templates.
    full: PathBuf,
    lean: PathBuf,
    /// Replaceable files (relative path, original content), in a stable order.
    files: Vec<(PathBuf, Vec<u8>)>,
}

const TEMPLATE: &str = "templates/en/reminder_1.j2";

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

fn folder() -> &'static Folder {
    static F: OnceLock<Folder> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        copy_tree(Path::new(RULES), &full);
        let lean = dir.path().join("lean");
        copy_tree(Path::new(RULES), &lean);
        fs::remove_dir_all(lean.join("templates")).unwrap();
        let mut names: Vec<PathBuf> = fs::read_dir(&full)
            .unwrap()
            .map(|e| PathBuf::from(e.unwrap().file_name()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        names.sort();
        // One template too: levels name templates and the loader compiles them all.
        names.push(PathBuf::from(TEMPLATE));
        let files = names
            .into_iter()
            .map(|n| {
                let text = fs::read(full.join(&n)).unwrap();
                (n, text)
            })
            .collect();
        Folder {
            _dir: dir,
            full,
            lean,
            files,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    let f = folder();
    let (rel, original) = &f.files[usize::from(pick) % f.files.len()];
    let root = if rel == Path::new(TEMPLATE) {
        &f.full
    } else {
        &f.lean
    };
    let path = root.join(rel);
    fs::write(&path, content).unwrap();
    let _ = arrears::rules::load(root);
    fs::write(&path, original).unwrap();
});
