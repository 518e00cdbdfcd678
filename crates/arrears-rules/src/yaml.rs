//! Deserializing a YAML rule file so that every error in it is reported once, at the
//! place of the value at fault.
//!
//! serde stops at a document's first error, and serde_yaml places an error at the
//! node whose deserializer was running when the error came out: for a value checked
//! after it was read (an amount that is no decimal) that is the enclosing mapping,
//! often the list item, lines away from the field. So a file is read in passes, each
//! through a thin wrapper around serde_yaml's deserializer that tracks the path of
//! every node:
//!
//! - a pass that fails names the innermost node the error came out of;
//! - a probe pass stops on purpose as that node starts, so serde_yaml's own mark
//!   gives its line and column;
//! - the passes after it step over that node (its map entry or list element), so the
//!   errors behind it are found too;
//! - a last pass leaves out each unit (a section, a list item: the caller says) that
//!   held an error, so what comes back holds only values that were read whole.
//!
//! Why serde_yaml and not a parser with positions: it is the only YAML crate in the
//! tree, and it must stay the one that reads the values. Its event parser
//! (unsafe-libyaml) can only be called through `unsafe`, which this workspace forbids;
//! a second parser just for positions (yaml-rust2, saphyr) would be a new dependency
//! that could also see a file differently (scalars, anchors, merge keys) from the one
//! that gives the values. Passes repeat the parse: rule files are a few KiB (at most
//! [`super::guard::MAX_FILE_BYTES`]), and the errors looked for in one file are
//! bounded by [`MAX_ERRORS`] and [`PARSE_BUDGET_BYTES`].

use std::cell::RefCell;
use std::fmt::{self, Display};
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
use serde::de::{Deserializer, EnumAccess, Visitor};

/// The most errors reported for one file; each costs two more parses of it.
pub const MAX_ERRORS: usize = 50;

/// Bytes parsed to find the errors of one file, at most: a large file gets fewer
/// errors reported, so that a file sent to `ValidateRules` costs the daemon at most
/// about as much as this many bytes of YAML.
pub const PARSE_BUDGET_BYTES: usize = 16 << 20;

/// One step from a node to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The list element at this index.
    Elem(usize),
    /// The key of the map entry at this index, with the key's text.
    Key(usize, String),
    /// The value of the map entry at this index, with the key's text.
    Val(usize, String),
}

impl Step {
    /// The key's text of a map step.
    pub fn key(&self) -> Option<&str> {
        match self {
            Step::Key(_, k) | Step::Val(_, k) => Some(k),
            Step::Elem(_) => None,
        }
    }

    /// Which node the step reaches. Entries are told apart by position, not by key:
    /// an entry is stepped over before its key is read.
    fn node(&self) -> (u8, usize) {
        match self {
            Step::Elem(i) => (0, *i),
            Step::Key(i, _) => (1, *i),
            Step::Val(i, _) => (2, *i),
        }
    }

    /// Which child the step is in: the key and the value of an entry are one.
    fn child(&self) -> (bool, usize) {
        match self {
            Step::Elem(i) => (false, *i),
            Step::Key(i, _) | Step::Val(i, _) => (true, *i),
        }
    }
}

fn same_node(a: &[Step], b: &[Step]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.node() == y.node())
}

fn same_child(a: &[Step], b: &[Step]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.child() == y.child())
}

/// A path as serde_yaml writes it in its messages (`strategies[0].criteria[2].points`);
/// a key's path is its map's, as serde_yaml has it. Empty for the document itself.
pub fn display_path(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Elem(i) => s.push_str(&format!("[{i}]")),
            Step::Val(_, k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Key(..) => {}
        }
    }
    s
}

/// One problem in a file: 1-based line and column when known, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Option<(usize, usize)>,
    pub message: String,
}

/// What [`parse`] read from a file.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The document without the units that held errors; `None` when the document
    /// itself could not be read (a syntax error, or a wrong type at the top).
    pub value: Option<T>,
    pub problems: Vec<Problem>,
    /// The units left out of `value`, as paths.
    pub left_out: Vec<Vec<Step>>,
    /// Whether the text is no YAML at all (a syntax error): nothing of it was read.
    pub syntax_error: bool,
}

/// Stack for reading a file. serde_yaml allows 128 levels of nesting, and in a debug
/// build serde's and serde_yaml's frames take about 8 MiB for that: more than a test
/// thread or a tokio worker has (2 MiB), and rule files also come from API callers.
const STACK_BYTES: usize = 32 << 20;

/// Reads `text` as a `T`, finding every error. `unit` tells for the path of an error
/// how many of its leading steps name what is left out of the result because of it.
pub fn parse<T: DeserializeOwned + Send>(
    text: &str,
    unit: impl Fn(&[Step]) -> usize + Sync,
) -> Parsed<T> {
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("rules-yaml".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, || parse_here(text, &unit));
        match spawned {
            Ok(h) => h
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            // No thread to be had: the caller's stack is enough for any usual file.
            Err(_) => parse_here(text, &unit),
        }
    })
}

fn parse_here<T: DeserializeOwned>(text: &str, unit: &impl Fn(&[Step]) -> usize) -> Parsed<T> {
    let max_errors = (PARSE_BUDGET_BYTES / (2 * text.len().max(1))).clamp(1, MAX_ERRORS);
    let mut problems = Vec::new();
    let mut skip: Vec<Vec<Step>> = Vec::new();
    loop {
        let ctl = Ctl::new(skip.clone(), None);
        let e = match run::<T>(text, &ctl) {
            // A file without errors is read once, as before.
            Ok(value) if skip.is_empty() => {
                return Parsed {
                    value: Some(value),
                    problems,
                    left_out: Vec::new(),
                    syntax_error: false,
                }
            }
            Ok(_) => break,
            Err(e) => e,
        };
        // A syntax error ends every pass at the same place, so it is the one error told.
        if skip.is_empty() {
            if let Err(e) = serde_yaml::from_str::<IgnoredAny>(text) {
                let pos = e.location().map(|l| (l.line(), l.column()));
                // serde_yaml appends "at line X column Y"; the position is printed up front.
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                return Parsed {
                    value: None,
                    problems: vec![Problem { pos, message: msg }],
                    left_out: Vec::new(),
                    syntax_error: true,
                };
            }
        }
        let fault = ctl.fault.take().unwrap_or_else(|| Fault {
            path: Vec::new(),
            message: e.to_string(),
        });
        if !is_cascade(&fault, &skip) {
            let pos = if fault.path.is_empty() {
                None
            } else {
                probe::<T>(text, &skip, &fault.path)
            }
            .or_else(|| e.location().map(|l| (l.line(), l.column())));
            problems.push(Problem {
                pos,
                message: describe(&fault),
            });
        }
        let stuck = fault.path.is_empty() || skip.iter().any(|s| same_child(s, &fault.path));
        // Errors that are no second error (a missing field) still cost a pass each.
        let spent = problems.len() >= max_errors || skip.len() >= 2 * max_errors;
        if stuck || spent {
            if !stuck {
                problems.push(Problem {
                    pos: None,
                    message: format!(
                        "checking stopped after {} errors: fix these and check again",
                        problems.len()
                    ),
                });
            }
            return Parsed {
                value: None,
                problems,
                left_out: Vec::new(),
                syntax_error: false,
            };
        }
        skip.push(fault.path);
    }
    let mut left_out: Vec<Vec<Step>> = Vec::new();
    for p in &skip {
        let u = p[..unit(p).clamp(1, p.len())].to_vec();
        if !left_out.iter().any(|l| same_child(l, &u)) {
            left_out.push(u);
        }
    }
    // Leaving out whole units only removes what the passes above stepped over, so
    // this pass cannot fail where they did not.
    let value = match run::<T>(text, &Ctl::new(left_out.clone(), None)) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem {
                pos: e.location().map(|l| (l.line(), l.column())),
                message: e.to_string(),
            });
            None
        }
    };
    Parsed {
        value,
        problems,
        left_out,
        syntax_error: false,
    }
}

/// A field that is missing only because its entry was stepped over for an error of
/// its own, or because its key is misspelt (reported as unknown), is no second error.
fn is_cascade(fault: &Fault, skip: &[Vec<Step>]) -> bool {
    let Some(field) = bare(fault)
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    else {
        return false;
    };
    skip.iter().any(|s| {
        s.len() == fault.path.len() + 1
            && same_child(&s[..fault.path.len()], &fault.path)
            && match s.last() {
                Some(Step::Val(_, k)) => k == field,
                Some(Step::Key(_, k)) => edit_distance(k, field) <= 2,
                _ => false,
            }
    })
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The message of a fault with the path of its node up front, as serde_yaml writes
/// it but with the node the error belongs to.
fn describe(fault: &Fault) -> String {
    let path = display_path(&fault.path);
    let msg = bare(fault);
    if path.is_empty() {
        msg.to_string()
    } else {
        format!("{path}: {msg}")
    }
}

/// The message of a fault without what serde_yaml may have added: the position and
/// the path of the node.
fn bare(fault: &Fault) -> &str {
    let mut msg = fault.message.as_str();
    if let Some((head, tail)) = msg.rsplit_once(" at line ") {
        if tail
            .split_once(" column ")
            .is_some_and(|(l, c)| is_number(l) && is_number(c))
        {
            msg = head;
        }
    }
    let path = display_path(&fault.path);
    if path.is_empty() {
        return msg;
    }
    msg.strip_prefix(path.as_str())
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn run<T: DeserializeOwned>(text: &str, ctl: &Ctl) -> Result<T, serde_yaml::Error> {
    Seed {
        seed: PhantomData::<T>,
        ctl,
        path: Vec::new(),
    }
    .deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Line and column of the node at `target`: a pass with the same skips reaches it
/// the same way, and stops there.
fn probe<T: DeserializeOwned>(
    text: &str,
    skip: &[Vec<Step>],
    target: &[Step],
) -> Option<(usize, usize)> {
    let ctl = Ctl::new(skip.to_vec(), Some(target.to_vec()));
    let e = run::<T>(text, &ctl).err()?;
    ctl.probed
        .get()
        .then(|| e.location().map(|l| (l.line(), l.column())))
        .flatten()
}

struct Fault {
    path: Vec<Step>,
    message: String,
}

struct Ctl {
    skip: Vec<Vec<Step>>,
    probe: Option<Vec<Step>>,
    probed: std::cell::Cell<bool>,
    fault: RefCell<Option<Fault>>,
}

impl Ctl {
    fn new(skip: Vec<Vec<Step>>, probe: Option<Vec<Step>>) -> Ctl {
        Ctl {
            skip,
            probe,
            probed: std::cell::Cell::new(false),
            fault: RefCell::new(None),
        }
    }

    fn skipped(&self, child: &[Step]) -> bool {
        self.skip.iter().any(|s| same_child(s, child))
    }

    fn probing(&self, node: &[Step]) -> bool {
        self.probe.as_deref().is_some_and(|p| same_node(p, node))
    }

    /// Errors come out from the innermost node first: the first one seen is where
    /// the error is.
    fn note<E: Display>(&self, path: &[Step], e: E) -> E {
        let mut f = self.fault.borrow_mut();
        if f.is_none() {
            *f = Some(Fault {
                path: path.to_vec(),
                message: e.to_string(),
            });
        }
        e
    }
}

fn child(path: &[Step], step: Step) -> Vec<Step> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(step);
    p
}

/// Fails at the first event of a node, so the error carries that node's mark.
struct Probe;

impl<'de> DeserializeSeed<'de> for Probe {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ProbeVisitor)
    }
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = ();
    // Every visit this does not override fails, which is the point.
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("nothing (locating a node)")
    }
}

/// A node to deserialize, at `path`.
struct Seed<'c, S> {
    seed: S,
    ctl: &'c Ctl,
    path: Vec<Step>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let Seed { seed, ctl, path } = self;
        seed.deserialize(De {
            de: d,
            ctl,
            path: path.clone(),
        })
        .map_err(|e| ctl.note(&path, e))
    }
}

struct De<'c, D> {
    de: D,
    ctl: &'c Ctl,
    path: Vec<Step>,
}

/// Every `deserialize_*` passes the visitor on wrapped by `split`.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
                let (de, visitor) = self.split(visitor);
                de.$method($($arg,)* visitor)
            }
        )*
    };
}

macro_rules! deserialize_methods {
    () => {
        forward_deserialize! {
            deserialize_any();
            deserialize_bool();
            deserialize_i8();
            deserialize_i16();
            deserialize_i32();
            deserialize_i64();
            deserialize_i128();
            deserialize_u8();
            deserialize_u16();
            deserialize_u32();
            deserialize_u64();
            deserialize_u128();
            deserialize_f32();
            deserialize_f64();
            deserialize_char();
            deserialize_str();
            deserialize_string();
            deserialize_bytes();
            deserialize_byte_buf();
            deserialize_option();
            deserialize_unit();
            deserialize_unit_struct(name: &'static str);
            deserialize_newtype_struct(name: &'static str);
            deserialize_seq();
            deserialize_tuple(len: usize);
            deserialize_tuple_struct(name: &'static str, len: usize);
            deserialize_map();
            deserialize_struct(name: &'static str, fields: &'static [&'static str]);
            deserialize_enum(name: &'static str, variants: &'static [&'static str]);
            deserialize_identifier();
            deserialize_ignored_any();
        }
    };
}

impl<'c, D> De<'c, D> {
    fn split<V>(self, vis: V) -> (D, Vis<'c, V>) {
        let De { de, ctl, path } = self;
        (de, Vis { vis, ctl, path })
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;
    deserialize_methods!();
    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The visits of scalars, which a map key may be: forwarded as they are, or
/// forwarded after keeping the scalar's text.
macro_rules! scalar_visits {
    ($how:ident) => {
        scalar_visits!(@ $how;
            visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
            visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
            visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
            visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        );
    };
    (@ forward; $($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.vis.$method(v)
            }
        )*
    };
    (@ keep; $($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                *self.text = Some(v.to_string());
                self.vis.$method(v)
            }
        )*
    };
}

macro_rules! byte_visits {
    () => {
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            self.vis.visit_bytes(v)
        }
        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
            self.vis.visit_borrowed_bytes(v)
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
            self.vis.visit_byte_buf(v)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            self.vis.visit_none()
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.vis.visit_unit()
        }
    };
}

struct Vis<'c, V> {
    vis: V,
    ctl: &'c Ctl,
    path: Vec<Step>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.vis.expecting(f)
    }

    scalar_visits!(forward);
    byte_visits!();

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let Vis { vis, ctl, path } = self;
        vis.visit_some(De { de: d, ctl, path })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let Vis { vis, ctl, path } = self;
        vis.visit_newtype_struct(De { de: d, ctl, path })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let Vis { vis, ctl, path } = self;
        vis.visit_seq(Seq {
            seq,
            ctl,
            path,
            next: 0,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let Vis { vis, ctl, path } = self;
        vis.visit_map(Map {
            map,
            ctl,
            path,
            next: 0,
            key: None,
        })
    }

    // Enums are tracked as a whole: rule files only use them as scalars.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.vis.visit_enum(data)
    }
}

struct Seq<'c, A> {
    seq: A,
    ctl: &'c Ctl,
    path: Vec<Step>,
    next: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        loop {
            let path = child(&self.path, Step::Elem(self.next));
            self.next += 1;
            if self.ctl.probing(&path) {
                self.ctl.probed.set(true);
                self.seq.next_element_seed(Probe)?;
                return Err(de::Error::custom("the probed element has no events"));
            }
            if self.ctl.skipped(&path) {
                if self.seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(None);
                }
                continue;
            }
            return self.seq.next_element_seed(Seed {
                seed,
                ctl: self.ctl,
                path,
            });
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct Map<'c, A> {
    map: A,
    ctl: &'c Ctl,
    path: Vec<Step>,
    /// Index of the next entry; the current one is `next - 1`.
    next: usize,
    /// The current entry's key text.
    key: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let at = self.next;
            self.next += 1;
            let key = child(&self.path, Step::Key(at, String::new()));
            let value = child(&self.path, Step::Val(at, String::new()));
            if self.ctl.probing(&key) {
                self.ctl.probed.set(true);
                self.map.next_key_seed(Probe)?;
                return Err(de::Error::custom("the probed key has no events"));
            }
            if self.ctl.probing(&value) {
                self.ctl.probed.set(true);
                if self.map.next_key::<IgnoredAny>()?.is_some() {
                    self.map.next_value_seed(Probe)?;
                }
                return Err(de::Error::custom("the probed value has no events"));
            }
            if self.ctl.skipped(&key) {
                if self.map.next_key::<IgnoredAny>()?.is_none() {
                    return Ok(None);
                }
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.key = None;
            return self.map.next_key_seed(KeySeed {
                seed,
                ctl: self.ctl,
                path: &self.path,
                at,
                text: &mut self.key,
            });
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let key = self.key.clone().unwrap_or_else(|| "?".into());
        self.map.next_value_seed(Seed {
            seed,
            ctl: self.ctl,
            path: child(&self.path, Step::Val(self.next - 1, key)),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A map key, whose text is kept for the paths of the entry.
struct KeySeed<'c, 'k, S> {
    seed: S,
    ctl: &'c Ctl,
    path: &'k [Step],
    at: usize,
    text: &'k mut Option<String>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, '_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let KeySeed {
            seed,
            ctl,
            path,
            at,
            text,
        } = self;
        seed.deserialize(KeyDe {
            de: d,
            text: &mut *text,
        })
        .map_err(|e| {
            let key = text.clone().unwrap_or_else(|| "?".into());
            ctl.note(&child(path, Step::Key(at, key)), e)
        })
    }
}

struct KeyDe<'k, D> {
    de: D,
    text: &'k mut Option<String>,
}

impl<'k, D> KeyDe<'k, D> {
    fn split<V>(self, vis: V) -> (D, KeyVis<'k, V>) {
        (
            self.de,
            KeyVis {
                vis,
                text: self.text,
            },
        )
    }
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDe<'_, D> {
    type Error = D::Error;
    deserialize_methods!();
    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

struct KeyVis<'k, V> {
    vis: V,
    text: &'k mut Option<String>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVis<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.vis.expecting(f)
    }

    scalar_visits!(keep);
    byte_visits!();

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.vis.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.vis.visit_newtype_struct(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.vis.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.vis.visit_map(map)
    }

    // A key that is an enum (a role) has its text in the variant.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.vis.visit_enum(KeyEnum {
            data,
            text: self.text,
        })
    }
}

struct KeyEnum<'k, A> {
    data: A,
    text: &'k mut Option<String>,
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for KeyEnum<'_, A> {
    type Error = A::Error;
    type Variant = A::Variant;
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, A::Variant), A::Error> {
        self.data.variant_seed(VariantSeed {
            seed,
            text: self.text,
        })
    }
}

struct VariantSeed<'k, S> {
    seed: S,
    text: &'k mut Option<String>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for VariantSeed<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(KeyDe {
            de: d,
            text: self.text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
    #[serde(rename_all = "lowercase")]
    enum Role {
        Collector,
        Manager,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        limits: BTreeMap<Role, Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        name: String,
        #[serde(default, deserialize_with = "crate::raw::opt_decimal")]
        amount: Option<rust_decimal::Decimal>,
        #[serde(default)]
        days: i64,
    }

    fn items(p: &[Step]) -> usize {
        if matches!(p.get(1), Some(Step::Elem(_))) {
            2
        } else {
            1
        }
    }

    fn problems(text: &str) -> Vec<(Option<(usize, usize)>, String)> {
        parse::<Doc>(text, items)
            .problems
            .into_iter()
            .map(|p| (p.pos, p.message))
            .collect()
    }

    #[test]
    fn each_error_is_placed_at_its_value_and_the_rest_is_kept() {
        let text = "\
items:
  - name: a
    amount: x1
    days: soon
  - name: b
    amount: 2
  - { name: c, amount: [3] }
limits:
  manager: { name: m, amount: y }
";
        let p = parse::<Doc>(text, items);
        let got: Vec<_> = p
            .problems
            .iter()
            .map(|p| (p.pos, p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Some((3, 13)),
                    "items[0].amount: `x1` is not a decimal amount"
                ),
                (
                    Some((4, 11)),
                    "items[0].days: invalid type: string \"soon\", expected i64"
                ),
                (
                    Some((7, 24)),
                    "items[2].amount: data did not match any variant of untagged enum Num"
                ),
                // A key that is an enum still names its entry.
                (
                    Some((9, 31)),
                    "limits.manager.amount: `y` is not a decimal amount"
                ),
            ],
        );
        let doc = p.value.unwrap();
        let names: Vec<_> = doc.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        let b = &doc.items[0];
        assert_eq!((b.amount, b.days), (Some(rust_decimal::Decimal::TWO), 0));
        assert!(doc.limits.is_empty());
        assert_eq!(p.left_out.len(), 3);
    }

    #[test]
    fn misspelt_or_wrong_keys_are_one_error_each() {
        assert_eq!(
            problems("items:\n  - nmae: a\n"),
            [(
                Some((2, 5)),
                "items[0]: unknown field `nmae`, expected one of `name`, `amount`, `days`".into()
            )],
        );
        // A wrong type on a required field is not also a missing one.
        assert_eq!(
            problems("items:\n  - name: [a]\n    days: 1\n"),
            [(
                Some((2, 11)),
                "items[0].name: invalid type: sequence, expected a string".into()
            )],
        );
        // A field that is really missing is reported, at its mapping.
        assert_eq!(
            problems("items:\n  - days: 1\n    extra: 2\n"),
            [
                (
                    Some((3, 5)),
                    "items[0]: unknown field `extra`, expected one of `name`, `amount`, `days`"
                        .into()
                ),
                (Some((2, 5)), "items[0]: missing field `name`".into()),
            ],
        );
        assert_eq!(edit_distance("grup", "group"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert!(edit_distance("extra", "name") > 2);
    }

    #[test]
    fn syntax_errors_empty_files_and_too_many_errors() {
        let p = parse::<Doc>("items:\n  - name: [a\n", items);
        assert!(p.syntax_error && p.value.is_none());
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0].pos.is_some());

        let p = parse::<Option<Doc>>("# all commented out\n", items);
        assert!(p.problems.is_empty() && matches!(p.value, Some(None)));

        let p = parse::<Doc>("[1, 2]", items);
        assert!(p.value.is_none() && !p.syntax_error);
        assert_eq!(p.problems[0].pos, Some((1, 1)));

        let bad = format!(
            "items:\n{}",
            "  - { name: a, days: x }\n".repeat(MAX_ERRORS + 5)
        );
        let p = parse::<Doc>(&bad, items);
        assert!(p.value.is_none());
        assert_eq!(p.problems.len(), MAX_ERRORS + 1);
        assert_eq!(p.problems[MAX_ERRORS - 1].pos, Some((MAX_ERRORS + 1, 22)));
    }

    /// The deepest nesting serde_yaml allows is read on a stack of its own: on a test
    /// thread's it overflows in a debug build.
    #[test]
    fn deep_block_nesting_fits_the_stack() {
        let nest = |depth: usize| {
            let mut text = String::new();
            for i in 0..depth {
                text.push_str(&format!("{}not:\n", " ".repeat(2 * i)));
            }
            text.push_str(&format!("{}score: {{ gt: x }}\n", " ".repeat(2 * depth)));
            text
        };
        let depth = 125;
        let p = parse::<crate::raw::Condition>(&nest(depth), |_| 1);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert_eq!(p.problems[0].pos, Some((depth + 1, 2 * depth + 14)));
        // Past serde_yaml's limit it is an error, not a crash.
        let p = parse::<crate::raw::Condition>(&nest(140), |_| 1);
        assert!(
            p.problems[0].message.contains("recursion limit"),
            "{:?}",
            p.problems
        );
    }
}
