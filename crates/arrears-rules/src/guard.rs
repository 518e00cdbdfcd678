//! Limits a rule file must meet before it reaches a parser.
//!
//! Rule files come from the rules folder and, through `ValidateRules` and `Simulate`,
//! from API callers. The YAML parser (libyaml, under serde_yaml) spends time
//! quadratic in the nesting depth of flow collections (`[[[[…` or `{a: {a: …`): a
//! 195 KB file of them takes tens of seconds before any depth limit of the
//! deserializer applies. So size and flow depth are checked first, in one linear
//! pass, and a file over either limit is refused naming the limit.

use std::io::Read;
use std::path::Path;

/// The largest rule file (YAML or script) read; the shipped ones are a few KiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The deepest nesting of YAML flow collections accepted. Rule files nest a handful
/// of levels; serde_yaml itself stops at 128.
pub const MAX_FLOW_DEPTH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("the file is larger than {max} bytes, the limit for a rule file")]
    TooLarge { max: u64 },
    #[error(
        "flow collections (`[` / `{{`) nested deeper than {max} levels, the limit for a rule file"
    )]
    TooDeep {
        line: usize,
        column: usize,
        max: usize,
    },
}

impl SourceError {
    /// 1-based line and column, when the problem has a place.
    pub fn pos(&self) -> Option<(usize, usize)> {
        match self {
            SourceError::TooDeep { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}

/// Reads a rule file of at most [`MAX_FILE_BYTES`]; a larger one is refused without
/// being read whole.
pub fn read(path: &Path) -> Result<String, SourceError> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    // One byte more than allowed tells "exactly the limit" from "over it", whatever
    // the metadata says (a file may grow while it is read).
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge {
            max: MAX_FILE_BYTES,
        });
    }
    Ok(text)
}

/// Reads a YAML rule file: [`read`], then [`check_yaml`].
pub fn read_yaml(path: &Path) -> Result<String, SourceError> {
    let text = read(path)?;
    check_yaml(&text)?;
    Ok(text)
}

/// Checks the size and the flow-collection depth of YAML text.
///
/// A light scanner, not a parser: it knows comments, quoted scalars and block scalars
/// (`|`, `>`), whose brackets are text, and that in block context a bracket opens a
/// collection only where a node starts (`key: [`, `- {`), not inside plain text such as
/// `note: see [1]`. Where it cannot tell, it counts a bracket, so it may over-count
/// nesting in odd text but never under-count a real collection's depth.
pub fn check_yaml(text: &str) -> Result<(), SourceError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge {
            max: MAX_FILE_BYTES,
        });
    }
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    // Inside a block scalar whose header line had this indentation.
    let mut block_scalar: Option<usize> = None;
    for (n, line) in text.split('\n').enumerate() {
        let b = line.as_bytes();
        let indent = b.iter().take_while(|&&c| c == b' ').count();
        if let Some(parent) = block_scalar {
            if indent == b.len() || b[indent] == b'\r' || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        // Whether a node may start here: at the start of a line, after `- `, `? `,
        // `: `, and in flow context after `[`, `{` and `,`.
        let mut node_start = quote.is_none();
        let mut i = indent;
        while i < b.len() {
            let c = b[i];
            let spaced = |j: usize| j >= b.len() || matches!(b[j], b' ' | b'\t' | b'\r');
            if let Some(q) = quote {
                match c {
                    b'\\' if q == b'"' => i += 1,
                    b'\'' if q == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 1,
                    _ if c == q => {
                        quote = None;
                        node_start = false;
                    }
                    _ => {}
                }
                i += 1;
                continue;
            }
            match c {
                b' ' | b'\t' | b'\r' => {}
                b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t') => break,
                b'[' | b'{' if depth > 0 || node_start => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(SourceError::TooDeep {
                            line: n + 1,
                            column: line[..i].chars().count() + 1,
                            max: MAX_FLOW_DEPTH,
                        });
                    }
                    node_start = true;
                }
                b']' | b'}' if depth > 0 => {
                    depth -= 1;
                    node_start = false;
                }
                b',' if depth > 0 => node_start = true,
                b'"' | b'\'' if node_start => quote = Some(c),
                b'-' | b'?' if node_start && spaced(i + 1) => {}
                b':' if depth > 0 || spaced(i + 1) => node_start = true,
                b'|' | b'>' if node_start && depth == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                // An anchor or a tag comes before its node.
                b'&' | b'!' if node_start => {
                    while i < b.len() && !spaced(i) {
                        i += 1;
                    }
                }
                _ => node_start = false,
            }
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(text: &str) -> Option<(usize, usize)> {
        match check_yaml(text) {
            Ok(()) => None,
            Err(e) => e.pos(),
        }
    }

    #[test]
    fn brackets_in_text_are_not_collections() {
        let ok = "\
a: see [1] and {x}[[[[
b: '[[[[[[' # [[[[[[
c: \"{{{{{{\\\"[[[\"
d: |
  [[[[[[[[ {{{{{{{{
  still text [[[[
e: >-
    {{{{{{{{{{
f: [1, [2, {k: [3]}], \"]\"]
- &x !tag [a]
";
        let many = ok.repeat(40);
        assert_eq!(depth_error(&many), None);
        // The shipped rules pass.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                read_yaml(&p).unwrap();
            }
        }
    }

    #[test]
    fn deep_flow_collections_are_refused_with_their_place() {
        let deep = format!("a: 1\nb: {}{}\n", "[".repeat(65), "]".repeat(65));
        assert_eq!(depth_error(&deep), Some((2, 68)));
        let at_limit = format!("b: {}{}\n", "[".repeat(64), "]".repeat(64));
        assert_eq!(depth_error(&at_limit), None);
        let mapping = format!("{}1{}", "{a: ".repeat(70), "}".repeat(70));
        assert_eq!(depth_error(&mapping), Some((1, 4 * 64 + 1)));
        let seq = format!("- {}", "[x, ".repeat(70));
        assert!(depth_error(&seq).is_some());
    }
}
