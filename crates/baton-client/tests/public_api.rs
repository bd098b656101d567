//! The semver guard: the crate's public API, as a user can name it, is
//! compared with the committed baseline `public-api.txt`. A removed or
//! changed item breaks users, an added one commits the crate to it: both
//! fail until the change is accepted deliberately with
//! `BATON_ACCEPT_PUBLIC_API=1 cargo test -p baton-client --test public_api`,
//! which rewrites the baseline for review.
//!
//! The source is parsed with `syn`, following the crate's `mod` declarations
//! from `src/lib.rs` (test modules left out). What counts:
//!
//! - Reachability: an item counts only when a user can name it, that is when
//!   it is `pub` in a module reachable from the root through `pub mod`s, or
//!   re-exported by a `pub use` of such a module. `pub use` chains are
//!   followed through private modules (and `pub use x::*` globs), into the
//!   sibling crate `baton-trace-context` too. Each item is listed under its
//!   public path (`baton_client::Publisher`), so moving it between private
//!   modules is no change; a second public path is listed as the same item.
//!   `pub(crate)` and private items, fields and methods never count.
//! - Impls, inherent and of traits, count when their self type is such an
//!   item (wherever the impl block is); a trait impl also needs a trait that
//!   is public (an impl of a crate-private trait cannot be used). Impls of
//!   the crate's own public traits for foreign types are listed under the
//!   trait. Inherent impls list their `pub` methods and constants, trait
//!   impls their header and associated types.
//! - Structs and enums carry their derive list, `#[repr]` and
//!   `#[non_exhaustive]`; a struct's public fields are listed and its hidden
//!   ones shown as `..` (or `_` in a tuple struct), since a struct without
//!   hidden fields can be built by users.
//! - Traits list their attributes (`#[async_trait]` changes every
//!   signature), supertraits, and each method signature, associated type and
//!   constant, marked `[required]` or `[default]`.
//! - Types re-exported from `baton-trace-context` are described the same
//!   way from that crate's source, with their impls there and the path they
//!   come from.
//! - The `pub use` lines of every public module (the re-export surface,
//!   including re-exports of other crates such as `proto`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use quote::ToTokens;

/// The variable that rewrites the baseline.
const ACCEPT_ENV: &str = "BATON_ACCEPT_PUBLIC_API";

/// The sibling crate whose re-exported types belong to this crate's API,
/// with its source directory relative to this crate's.
const TRACE_CONTEXT: (&str, &str) = ("baton_trace_context", "../baton-trace-context/src");

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Tokens as one line, normalised (`quote` spaces every token).
fn tokens(node: &impl ToTokens) -> String {
    node.to_token_stream().to_string()
}

fn is_public(vis: &syn::Visibility) -> bool {
    matches!(vis, syn::Visibility::Public(_))
}

fn non_exhaustive(attrs: &[syn::Attribute]) -> &'static str {
    if attrs.iter().any(|a| a.path().is_ident("non_exhaustive")) {
        "#[non_exhaustive] "
    } else {
        ""
    }
}

/// Whether the attributes hold a `#[cfg(...)]` that needs `test`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if !a.path().is_ident("cfg") {
            return false;
        }
        // The predicate's words, string literals (`feature = "test-util"`)
        // left out.
        let text = tokens(&a.meta);
        let unquoted: String = text.split('"').step_by(2).collect();
        let words: Vec<&str> = unquoted
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .collect();
        words.contains(&"test") && !words.contains(&"not")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn item_vis(item: &syn::Item) -> Option<&syn::Visibility> {
    match item {
        syn::Item::Const(i) => Some(&i.vis),
        syn::Item::Enum(i) => Some(&i.vis),
        syn::Item::ExternCrate(i) => Some(&i.vis),
        syn::Item::Fn(i) => Some(&i.vis),
        syn::Item::Mod(i) => Some(&i.vis),
        syn::Item::Static(i) => Some(&i.vis),
        syn::Item::Struct(i) => Some(&i.vis),
        syn::Item::Trait(i) => Some(&i.vis),
        syn::Item::TraitAlias(i) => Some(&i.vis),
        syn::Item::Type(i) => Some(&i.vis),
        syn::Item::Union(i) => Some(&i.vis),
        syn::Item::Use(i) => Some(&i.vis),
        _ => None,
    }
}

/// The name an item defines (modules and imports aside).
fn defined_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::TraitAlias(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        _ => return None,
    };
    Some(ident.to_string())
}

/// A path's segments without their generic arguments; a leading `::` is a
/// `"::"` segment.
fn path_segments(path: &syn::Path) -> Vec<String> {
    let mut segments = Vec::new();
    if path.leading_colon.is_some() {
        segments.push("::".to_string());
    }
    segments.extend(path.segments.iter().map(|s| s.ident.to_string()));
    segments
}

fn join(module: &[String], name: impl ToString) -> Vec<String> {
    let mut path = module.to_vec();
    path.push(name.to_string());
    path
}

fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

/// One parsed crate: the items of each module, by path from the root (`[]`).
struct Crate {
    /// As users write it (`baton_client`).
    name: String,
    modules: BTreeMap<Vec<String>, Vec<syn::Item>>,
}

impl Crate {
    /// Parses the crate whose files (paths relative to `src`, `/`-separated)
    /// are `sources`, from `lib.rs` along its `mod` declarations.
    fn parse(name: &str, sources: &BTreeMap<String, String>) -> Self {
        let mut modules = BTreeMap::new();
        load_module(
            sources,
            parse_source(sources, "lib.rs"),
            "",
            Vec::new(),
            &mut modules,
        );
        Self {
            name: name.to_string(),
            modules,
        }
    }

    /// Reads and parses the crate whose source directory is `src`.
    fn read(name: &str, src: &Path) -> Self {
        let mut sources = BTreeMap::new();
        for file in rust_files(src) {
            let relative = file.strip_prefix(src).unwrap();
            let key = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            sources.insert(key, std::fs::read_to_string(&file).unwrap());
        }
        Self::parse(name, &sources)
    }
}

fn parse_source(sources: &BTreeMap<String, String>, file: &str) -> Vec<syn::Item> {
    let text = sources
        .get(file)
        .unwrap_or_else(|| panic!("no source file {file}"));
    syn::parse_file(text)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .items
}

/// Records a module's items and, recursively, its child modules' (`dir` is
/// where the files of its children are). Test items are left out.
fn load_module(
    sources: &BTreeMap<String, String>,
    mut items: Vec<syn::Item>,
    dir: &str,
    path: Vec<String>,
    modules: &mut BTreeMap<Vec<String>, Vec<syn::Item>>,
) {
    items.retain(|item| !is_test(item_attrs(item)));
    for item in &mut items {
        let syn::Item::Mod(module) = item else {
            continue;
        };
        let name = module.ident.to_string();
        assert!(
            !module.attrs.iter().any(|a| a.path().is_ident("path")),
            "mod {name} in {dir}: #[path] is not supported by the public-API guard"
        );
        let child_items = match &mut module.content {
            // Moved out: the module's items live in its own entry.
            Some((_, inner)) => std::mem::take(inner),
            None => {
                let file = [format!("{dir}{name}.rs"), format!("{dir}{name}/mod.rs")]
                    .into_iter()
                    .find(|f| sources.contains_key(f))
                    .unwrap_or_else(|| panic!("no file for mod {name} in {dir}"));
                parse_source(sources, &file)
            }
        };
        load_module(
            sources,
            child_items,
            &format!("{dir}{name}/"),
            join(&path, &name),
            modules,
        );
    }
    modules.insert(path, items);
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A module of one of the parsed crates (index, path).
    Module(usize, Vec<String>),
    /// An item of one of the parsed crates (index, module, name).
    Item(usize, Vec<String>, String),
    /// Something of another crate (`std::time::Duration`), or a name the
    /// guard does not resolve (the prelude's, a generic parameter).
    External(String),
}

/// One name a `use` brings in: `binding` is `None` for a glob.
struct UseLeaf {
    path: Vec<String>,
    binding: Option<String>,
}

fn use_leaves(item: &syn::ItemUse) -> Vec<UseLeaf> {
    fn collect(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<UseLeaf>) {
        match tree {
            syn::UseTree::Path(p) => collect(&p.tree, join(&prefix, &p.ident), out),
            syn::UseTree::Name(n) if n.ident == "self" => out.push(UseLeaf {
                binding: prefix.last().cloned(),
                path: prefix,
            }),
            syn::UseTree::Name(n) => out.push(UseLeaf {
                path: join(&prefix, &n.ident),
                binding: Some(n.ident.to_string()),
            }),
            syn::UseTree::Rename(r) => out.push(UseLeaf {
                path: if r.ident == "self" {
                    prefix
                } else {
                    join(&prefix, &r.ident)
                },
                binding: Some(r.rename.to_string()),
            }),
            syn::UseTree::Glob(_) => out.push(UseLeaf {
                path: prefix,
                binding: None,
            }),
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    collect(tree, prefix.clone(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    let prefix = if item.leading_colon.is_some() {
        vec!["::".to_string()]
    } else {
        Vec::new()
    };
    collect(&item.tree, prefix, &mut out);
    out
}

/// The public paths of one crate.
#[derive(Default)]
struct Surface {
    /// Every target with every path a user can name it by.
    paths: BTreeMap<Target, BTreeSet<String>>,
    /// `pub use`s that name nothing the guard could find.
    unresolved: Vec<String>,
}

impl Surface {
    /// Each target's label: its shortest public path.
    fn labels(&self) -> BTreeMap<Target, String> {
        self.paths
            .iter()
            .map(|(target, paths)| {
                let label = paths
                    .iter()
                    .min_by_key(|p| (p.matches("::").count(), p.as_str()))
                    .unwrap();
                (target.clone(), label.clone())
            })
            .collect()
    }
}

/// The parsed crates; the first is the one whose API is listed.
struct Api<'a> {
    crates: &'a [Crate],
}

impl Api<'_> {
    fn items(&self, krate: usize, module: &[String]) -> &[syn::Item] {
        self.crates[krate]
            .modules
            .get(module)
            .map_or(&[], Vec::as_slice)
    }

    /// What `name` is bound to in a module: a child module, an item, or an
    /// import (followed), globs last.
    fn lookup(&self, krate: usize, module: &[String], name: &str, depth: usize) -> Vec<Target> {
        if depth > 32 {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut globs = Vec::new();
        for item in self.items(krate, module) {
            match item {
                syn::Item::Mod(m) if m.ident == name => {
                    found.push(Target::Module(krate, join(module, name)));
                }
                syn::Item::Use(u) => {
                    for leaf in use_leaves(u) {
                        match leaf.binding.as_deref() {
                            Some(b) if b == name => {
                                found.extend(self.resolve(krate, module, &leaf.path, depth + 1));
                            }
                            None => globs.push(leaf.path),
                            Some(_) => {}
                        }
                    }
                }
                _ if defined_name(item).as_deref() == Some(name) => {
                    found.push(Target::Item(krate, module.to_vec(), name.to_string()));
                }
                _ => {}
            }
        }
        if found.is_empty() {
            for glob in globs {
                for base in self.resolve(krate, module, &glob, depth + 1) {
                    if let Target::Module(k, path) = base {
                        found.extend(self.lookup(k, &path, name, depth + 1));
                    }
                }
            }
        }
        found.sort();
        found.dedup();
        found
    }

    /// What a path written in `module` names (its segments without generic
    /// arguments).
    fn resolve(
        &self,
        krate: usize,
        module: &[String],
        path: &[String],
        depth: usize,
    ) -> Vec<Target> {
        let Some((first, rest)) = path.split_first() else {
            return vec![Target::Module(krate, module.to_vec())];
        };
        let extern_root = |name: &str| match self.crates.iter().position(|c| c.name == name) {
            Some(k) => vec![Target::Module(k, Vec::new())],
            None => vec![Target::External(name.to_string())],
        };
        let (mut current, rest) = match first.as_str() {
            "crate" => (vec![Target::Module(krate, Vec::new())], rest),
            "self" => (vec![Target::Module(krate, module.to_vec())], rest),
            "super" => (vec![Target::Module(krate, parent(module))], rest),
            "::" => match rest.split_first() {
                Some((name, rest)) => (extern_root(name), rest),
                None => return Vec::new(),
            },
            name => {
                let local = self.lookup(krate, module, name, depth);
                (
                    if local.is_empty() {
                        extern_root(name)
                    } else {
                        local
                    },
                    rest,
                )
            }
        };
        for segment in rest {
            current = current
                .into_iter()
                .flat_map(|target| match target {
                    Target::Module(k, path) => match segment.as_str() {
                        "self" => vec![Target::Module(k, path)],
                        "super" => vec![Target::Module(k, parent(&path))],
                        _ => self.lookup(k, &path, segment, depth + 1),
                    },
                    Target::External(p) => vec![Target::External(format!("{p}::{segment}"))],
                    // An enum's variant or an associated item: no item of
                    // its own.
                    Target::Item(..) => Vec::new(),
                })
                .collect();
        }
        current
    }

    /// The item a type names (through references), if any.
    fn type_target(&self, krate: usize, module: &[String], ty: &syn::Type) -> Option<Target> {
        match ty {
            syn::Type::Path(p) if p.qself.is_none() => self
                .resolve(krate, module, &path_segments(&p.path), 0)
                .into_iter()
                .find(|t| !matches!(t, Target::Module(..))),
            syn::Type::Reference(r) => self.type_target(krate, module, &r.elem),
            syn::Type::Paren(p) => self.type_target(krate, module, &p.elem),
            syn::Type::Group(g) => self.type_target(krate, module, &g.elem),
            _ => None,
        }
    }

    /// Every path a user can name in crate `krate`.
    fn surface(&self, krate: usize) -> Surface {
        let mut surface = Surface::default();
        let root = self.crates[krate].name.clone();
        surface
            .paths
            .entry(Target::Module(krate, Vec::new()))
            .or_default()
            .insert(root.clone());
        self.walk(krate, &[], &root, &mut surface, &mut BTreeSet::new());
        surface
    }

    /// Adds the public names of a module, named `prefix`, to `surface`.
    fn walk(
        &self,
        krate: usize,
        module: &[String],
        prefix: &str,
        surface: &mut Surface,
        seen: &mut BTreeSet<(usize, Vec<String>, String)>,
    ) {
        if !seen.insert((krate, module.to_vec(), prefix.to_string())) {
            return;
        }
        for item in self.items(krate, module) {
            if !item_vis(item).is_some_and(is_public) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let path = format!("{prefix}::{}", m.ident);
                    let child = join(module, &m.ident);
                    surface
                        .paths
                        .entry(Target::Module(krate, child.clone()))
                        .or_default()
                        .insert(path.clone());
                    self.walk(krate, &child, &path, surface, seen);
                }
                syn::Item::Use(u) => {
                    for leaf in use_leaves(u) {
                        let targets = self.resolve(krate, module, &leaf.path, 0);
                        if targets.is_empty() {
                            surface
                                .unresolved
                                .push(format!("{prefix}: pub use {}", leaf.path.join("::")));
                            continue;
                        }
                        match leaf.binding.as_deref() {
                            // A glob re-exports the public names of a module
                            // (of another crate's, nothing to list).
                            None => {
                                for target in targets {
                                    if let Target::Module(k, path) = target {
                                        self.walk(k, &path, prefix, surface, seen);
                                    }
                                }
                            }
                            Some("_") => {}
                            Some(binding) => {
                                let path = format!("{prefix}::{binding}");
                                for target in targets {
                                    if let Target::Module(k, module) = &target {
                                        self.walk(*k, module, &path, surface, seen);
                                    }
                                    surface
                                        .paths
                                        .entry(target)
                                        .or_default()
                                        .insert(path.clone());
                                }
                            }
                        }
                    }
                }
                _ => {
                    if let Some(name) = defined_name(item) {
                        surface
                            .paths
                            .entry(Target::Item(krate, module.to_vec(), name.clone()))
                            .or_default()
                            .insert(format!("{prefix}::{name}"));
                    }
                }
            }
        }
    }
}

/// The derive list (sorted), `#[repr]` and `#[non_exhaustive]` of a type.
fn type_attrs(attrs: &[syn::Attribute]) -> String {
    let mut derives: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .flat_map(|a| {
            a.parse_args_with(
                syn::punctuated::Punctuated::<syn::Path, syn::Token![,]>::parse_terminated,
            )
            .unwrap()
            .into_iter()
            .map(|p| path_segments(&p).join("::"))
        })
        .collect();
    derives.sort();
    derives.dedup();
    let mut out = String::new();
    if !derives.is_empty() {
        out.push_str(&format!("#[derive({})] ", derives.join(", ")));
    }
    for attr in attrs {
        // `#[cfg_attr(feature = "serde", derive(Serialize))]` and the like.
        if attr.path().is_ident("repr") || attr.path().is_ident("cfg_attr") {
            out.push_str(&format!("#[{}] ", tokens(&attr.meta)));
        }
    }
    out.push_str(non_exhaustive(attrs));
    out
}

/// Attributes other than documentation and lint levels, as written.
fn other_attrs(attrs: &[syn::Attribute]) -> String {
    attrs
        .iter()
        .filter(|a| {
            !["doc", "allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|name| a.path().is_ident(name))
        })
        .map(|a| format!("#[{}] ", tokens(&a.meta)))
        .collect()
}

fn where_clause(generics: &syn::Generics) -> String {
    generics
        .where_clause
        .as_ref()
        .map(|w| format!(" {}", tokens(w)))
        .unwrap_or_default()
}

/// Named fields: the public ones, the hidden ones as `..`.
fn named_fields(fields: &syn::FieldsNamed) -> String {
    let mut list: Vec<String> = fields
        .named
        .iter()
        .filter(|f| is_public(&f.vis))
        .map(|f| format!("{}: {}", f.ident.as_ref().unwrap(), tokens(&f.ty)))
        .collect();
    if fields.named.iter().any(|f| !is_public(&f.vis)) {
        list.push("..".to_string());
    }
    format!(" {{ {} }}", list.join(", "))
}

/// A struct's public fields, its hidden ones as `..` (or `_` when unnamed).
fn struct_fields(fields: &syn::Fields) -> String {
    match fields {
        syn::Fields::Named(named) => named_fields(named),
        syn::Fields::Unnamed(unnamed) => {
            let list: Vec<String> = unnamed
                .unnamed
                .iter()
                .map(|f| {
                    if is_public(&f.vis) {
                        tokens(&f.ty)
                    } else {
                        "_".to_string()
                    }
                })
                .collect();
            format!("({})", list.join(", "))
        }
        syn::Fields::Unit => String::new(),
    }
}

/// A variant's fields (all public).
fn variant_fields(fields: &syn::Fields) -> String {
    let list: Vec<String> = fields
        .iter()
        .map(|f| match &f.ident {
            Some(name) => format!("{name}: {}", tokens(&f.ty)),
            None => tokens(&f.ty),
        })
        .collect();
    match fields {
        syn::Fields::Named(_) => format!(" {{ {} }}", list.join(", ")),
        syn::Fields::Unnamed(_) => format!("({})", list.join(", ")),
        syn::Fields::Unit => String::new(),
    }
}

fn required(has_default: bool) -> &'static str {
    if has_default {
        "[default]"
    } else {
        "[required]"
    }
}

/// The lines describing one public item, under its label.
fn describe(item: &syn::Item, label: &str, lines: &mut BTreeSet<String>) {
    let mut push = |line: String| {
        lines.insert(format!("{label}: {line}"));
    };
    match item {
        syn::Item::Struct(s) => push(format!(
            "{}pub struct {}{}{}{}",
            type_attrs(&s.attrs),
            s.ident,
            tokens(&s.generics),
            struct_fields(&s.fields),
            where_clause(&s.generics),
        )),
        syn::Item::Union(u) => push(format!(
            "{}pub union {}{}{}{}",
            type_attrs(&u.attrs),
            u.ident,
            tokens(&u.generics),
            named_fields(&u.fields),
            where_clause(&u.generics),
        )),
        syn::Item::Enum(e) => {
            let variants: Vec<String> = e
                .variants
                .iter()
                .map(|v| {
                    let default = if v.attrs.iter().any(|a| a.path().is_ident("default")) {
                        "#[default] "
                    } else {
                        ""
                    };
                    let discriminant = v
                        .discriminant
                        .as_ref()
                        .map(|(_, d)| format!(" = {}", tokens(d)))
                        .unwrap_or_default();
                    format!(
                        "{}{default}{}{}{discriminant}",
                        non_exhaustive(&v.attrs),
                        v.ident,
                        variant_fields(&v.fields)
                    )
                })
                .collect();
            push(format!(
                "{}pub enum {}{}{} {{ {} }}",
                type_attrs(&e.attrs),
                e.ident,
                tokens(&e.generics),
                where_clause(&e.generics),
                variants.join(", ")
            ));
        }
        syn::Item::Trait(t) => {
            let supertraits = if t.colon_token.is_some() {
                format!(": {}", tokens(&t.supertraits))
            } else {
                String::new()
            };
            push(format!(
                "{}pub {}{}trait {}{}{supertraits}{}",
                other_attrs(&t.attrs),
                if t.unsafety.is_some() { "unsafe " } else { "" },
                if t.auto_token.is_some() { "auto " } else { "" },
                t.ident,
                tokens(&t.generics),
                where_clause(&t.generics),
            ));
            for member in &t.items {
                match member {
                    syn::TraitItem::Fn(f) => push(format!(
                        "trait fn {}{} {}",
                        other_attrs(&f.attrs),
                        tokens(&f.sig),
                        required(f.default.is_some())
                    )),
                    syn::TraitItem::Type(ty) => {
                        let bounds = if ty.colon_token.is_some() {
                            format!(": {}", tokens(&ty.bounds))
                        } else {
                            String::new()
                        };
                        let default = ty
                            .default
                            .as_ref()
                            .map(|(_, d)| format!(" = {}", tokens(d)))
                            .unwrap_or_default();
                        push(format!(
                            "trait type {}{}{}{bounds}{}{default} {}",
                            other_attrs(&ty.attrs),
                            ty.ident,
                            tokens(&ty.generics),
                            where_clause(&ty.generics),
                            required(ty.default.is_some())
                        ));
                    }
                    syn::TraitItem::Const(c) => push(format!(
                        "trait const {}{}: {} {}",
                        other_attrs(&c.attrs),
                        c.ident,
                        tokens(&c.ty),
                        required(c.default.is_some())
                    )),
                    other => push(format!("trait item {}", tokens(other))),
                }
            }
        }
        syn::Item::Fn(f) => push(format!("pub {}", tokens(&f.sig))),
        syn::Item::Const(c) => push(format!("pub const {}: {}", c.ident, tokens(&c.ty))),
        syn::Item::Static(s) => push(format!(
            "pub static {}{}: {}",
            if matches!(s.mutability, syn::StaticMutability::Mut(_)) {
                "mut "
            } else {
                ""
            },
            s.ident,
            tokens(&s.ty)
        )),
        syn::Item::Type(t) => push(format!(
            "pub type {}{} = {}{}",
            t.ident,
            tokens(&t.generics),
            tokens(&t.ty),
            where_clause(&t.generics)
        )),
        syn::Item::TraitAlias(t) => push(tokens(t)),
        _ => {}
    }
}

impl Api<'_> {
    /// The API of the first crate, one sorted line per fact.
    fn lines(&self) -> BTreeSet<String> {
        let main = self.surface(0);
        let labels = main.labels();
        // Every crate's public targets, for the traits of impls and the
        // origin of re-exported items; the first crate's paths win.
        let mut public: BTreeMap<Target, String> = BTreeMap::new();
        for k in (1..self.crates.len()).rev() {
            public.extend(self.surface(k).labels());
        }
        public.extend(labels.clone());

        let mut lines = BTreeSet::new();
        for line in &main.unresolved {
            lines.insert(format!("UNRESOLVED {line}"));
        }
        for (target, paths) in &main.paths {
            let label = &labels[target];
            for path in paths.iter().filter(|p| *p != label) {
                lines.insert(format!("{path}: same item as {label}"));
            }
            match target {
                Target::Module(k, module) => {
                    if let Some(name) = module.last() {
                        lines.insert(format!("{label}: pub mod {name}"));
                    }
                    for item in self.items(*k, module) {
                        if let syn::Item::Use(u) = item
                            && is_public(&u.vis)
                        {
                            lines.insert(format!("{label}: pub use {}", tokens(&u.tree)));
                        }
                    }
                }
                Target::Item(k, module, name) => {
                    if *k != 0 {
                        let origin =
                            self.surface(*k).labels().remove(target).unwrap_or_else(|| {
                                let mut path = vec![self.crates[*k].name.clone()];
                                path.extend(module.iter().cloned());
                                path.push(name.clone());
                                format!("{} (not public there)", path.join("::"))
                            });
                        lines.insert(format!("{label}: re-export of {origin}"));
                    }
                    for item in self.items(*k, module) {
                        if defined_name(item).as_deref() == Some(name) {
                            describe(item, label, &mut lines);
                        }
                    }
                }
                Target::External(_) => {}
            }
        }
        for (k, krate) in self.crates.iter().enumerate() {
            for (module, items) in &krate.modules {
                for item in items {
                    if let syn::Item::Impl(imp) = item {
                        self.impl_lines(k, module, imp, &labels, &public, &mut lines);
                    }
                }
            }
        }
        lines
    }

    /// The lines of one impl block, when users can use it.
    fn impl_lines(
        &self,
        krate: usize,
        module: &[String],
        imp: &syn::ItemImpl,
        labels: &BTreeMap<Target, String>,
        public: &BTreeMap<Target, String>,
        lines: &mut BTreeSet<String>,
    ) {
        let self_target = self.type_target(krate, module, &imp.self_ty);
        let self_label = self_target.as_ref().and_then(|t| labels.get(t));
        let generics = tokens(&imp.generics);
        let where_ = where_clause(&imp.generics);
        let self_ty = tokens(&imp.self_ty);
        let Some((bang, path, _)) = &imp.trait_ else {
            let Some(label) = self_label else { return };
            for member in &imp.items {
                match member {
                    syn::ImplItem::Fn(f) if is_public(&f.vis) && !is_test(&f.attrs) => {
                        lines.insert(format!(
                            "{label}: impl{generics} {self_ty}{where_}: pub {}",
                            tokens(&f.sig)
                        ));
                    }
                    syn::ImplItem::Const(c) if is_public(&c.vis) && !is_test(&c.attrs) => {
                        lines.insert(format!(
                            "{label}: impl{generics} {self_ty}{where_}: pub const {}: {}",
                            c.ident,
                            tokens(&c.ty)
                        ));
                    }
                    _ => {}
                }
            }
            return;
        };
        let trait_target = self
            .resolve(krate, module, &path_segments(path), 0)
            .into_iter()
            .next();
        let trait_name = match &trait_target {
            // A trait of the parsed crates that users cannot name: its impls
            // are of no use to them.
            Some(t @ Target::Item(..)) => match public.get(t) {
                Some(label) => label.clone(),
                None => return,
            },
            Some(Target::External(p)) => p.clone(),
            _ => path_segments(path).join("::"),
        };
        let args = &path.segments.last().unwrap().arguments;
        let trait_name = if args.is_empty() {
            trait_name
        } else {
            format!("{trait_name} {}", tokens(args))
        };
        let label = match self_label {
            Some(label) => label,
            // A foreign (or generic) self type: listed under the crate's own
            // public trait.
            None if !matches!(self_target, Some(Target::Item(..))) => {
                match trait_target.as_ref().and_then(|t| labels.get(t)) {
                    Some(label) => label,
                    None => return,
                }
            }
            None => return,
        };
        let head = format!(
            "{}impl{generics} {}{trait_name} for {self_ty}{where_}",
            if imp.unsafety.is_some() {
                "unsafe "
            } else {
                ""
            },
            if bang.is_some() { "!" } else { "" },
        );
        lines.insert(format!("{label}: {head}"));
        for member in &imp.items {
            if let syn::ImplItem::Type(t) = member {
                lines.insert(format!(
                    "{label}: {head}: type {}{} = {}",
                    t.ident,
                    tokens(&t.generics),
                    tokens(&t.ty)
                ));
            }
        }
    }
}

/// The crate's public API, one sorted line per fact.
fn public_api() -> BTreeSet<String> {
    let crates = [
        Crate::read("baton_client", &crate_dir().join("src")),
        Crate::read(TRACE_CONTEXT.0, &crate_dir().join(TRACE_CONTEXT.1)),
    ];
    Api { crates: &crates }.lines()
}

/// What changed from `baseline` to `current`: (removed or changed, added).
fn compare(baseline: &BTreeSet<String>, current: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let removed = baseline.difference(current).cloned().collect();
    let added = current.difference(baseline).cloned().collect();
    (removed, added)
}

/// The failure message for a difference, or `None` when there is none.
fn verdict(removed: &[String], added: &[String]) -> Option<String> {
    if removed.is_empty() && added.is_empty() {
        return None;
    }
    let mut message = String::from("the public API of baton-client changed.\n");
    if !removed.is_empty() {
        message.push_str(
            "\nRemoved or changed (a breaking change for users; needs a major version):\n",
        );
        for line in removed {
            message.push_str(&format!("  - {line}\n"));
        }
    }
    if !added.is_empty() {
        message.push_str("\nAdded (the crate commits to these):\n");
        for line in added {
            message.push_str(&format!("  + {line}\n"));
        }
    }
    message.push_str(&format!(
        "\nIf the change is deliberate, accept it with\n  \
         {ACCEPT_ENV}=1 cargo test -p baton-client --test public_api\n\
         and commit the rewritten crates/baton-client/public-api.txt for review.\n"
    ));
    Some(message)
}

#[test]
fn public_api_matches_the_baseline() {
    let baseline_path = crate_dir().join("public-api.txt");
    let current = public_api();
    assert!(
        current
            .iter()
            .any(|l| l.starts_with("baton_client::Publisher: ")),
        "the lister found no API"
    );
    let unresolved: Vec<&String> = current
        .iter()
        .filter(|l| l.starts_with("UNRESOLVED"))
        .collect();
    assert!(
        unresolved.is_empty(),
        "the guard could not follow these re-exports: {unresolved:#?}"
    );
    if std::env::var_os(ACCEPT_ENV).is_some_and(|v| v == "1") {
        let mut text = String::from(
            "# The public API of baton-client, checked by tests/public_api.rs.\n\
             # Regenerate with BATON_ACCEPT_PUBLIC_API=1 after a deliberate change.\n",
        );
        for line in &current {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&baseline_path, text).unwrap();
        return;
    }
    let baseline: BTreeSet<String> = std::fs::read_to_string(&baseline_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let (removed, added) = compare(&baseline, &current);
    if let Some(message) = verdict(&removed, &added) {
        panic!("{message}");
    }
}

/// The comparison catches removals, changes and additions, and says how to
/// accept them.
#[test]
fn the_guard_fails_on_any_change() {
    let set =
        |lines: &[&str]| -> BTreeSet<String> { lines.iter().map(|l| l.to_string()).collect() };
    let baseline = set(&["m: pub fn a ()", "m: pub fn b (x : u8)", "m: pub fn c ()"]);
    let current = set(&["m: pub fn a ()", "m: pub fn b (x : u16)", "m: pub fn d ()"]);
    let (removed, added) = compare(&baseline, &current);
    assert_eq!(removed, ["m: pub fn b (x : u8)", "m: pub fn c ()"]);
    assert_eq!(added, ["m: pub fn b (x : u16)", "m: pub fn d ()"]);
    let message = verdict(&removed, &added).unwrap();
    assert!(message.contains("- m: pub fn c ()") && message.contains("+ m: pub fn d ()"));
    assert!(message.contains(ACCEPT_ENV));
    // Additions alone fail too.
    let (removed, added) = compare(
        &baseline,
        &set(&[
            "m: pub fn a ()",
            "m: pub fn b (x : u8)",
            "m: pub fn c ()",
            "m: pub fn e ()",
        ]),
    );
    assert!(removed.is_empty());
    assert!(verdict(&removed, &added).is_some());
    assert!(verdict(&[], &[]).is_none());
}

/// A crate parsed from inline files (`(path under src, source)`).
fn inline_crate(name: &str, files: &[(&str, &str)]) -> Crate {
    let sources = files
        .iter()
        .map(|(path, text)| (path.to_string(), text.to_string()))
        .collect();
    Crate::parse(name, &sources)
}

/// The API lines of `files` as crate `x`, with `others` as sibling crates.
fn inline_api(files: &[(&str, &str)], others: &[(&str, &[(&str, &str)])]) -> BTreeSet<String> {
    let mut crates = vec![inline_crate("x", files)];
    crates.extend(others.iter().map(|(name, files)| inline_crate(name, files)));
    Api { crates: &crates }.lines()
}

fn has_line(lines: &BTreeSet<String>, line: &str) -> bool {
    lines.contains(line)
}

fn mentions(lines: &BTreeSet<String>, word: &str) -> bool {
    lines.iter().any(|l| l.contains(word))
}

/// A `pub fn` of a private module, or of a type that is never re-exported,
/// is not API; re-exported, it is (under its public path).
#[test]
fn a_private_modules_pub_items_count_only_when_reexported() {
    let inner = "pub fn shown() {}
                 pub fn hidden() {}
                 pub struct Internal;
                 impl Internal { pub fn internal_method(&self) {} }
                 impl std::fmt::Debug for Internal {
                     fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) }
                 }";
    let api = inline_api(
        &[
            ("lib.rs", "mod inner; pub use inner::shown;"),
            ("inner.rs", inner),
        ],
        &[],
    );
    assert!(has_line(&api, "x::shown: pub fn shown ()"), "{api:#?}");
    assert!(has_line(&api, "x: pub use inner :: shown"), "{api:#?}");
    for private in ["hidden", "Internal", "internal_method", "Debug"] {
        assert!(!mentions(&api, private), "{private} listed: {api:#?}");
    }

    // Re-exported, the type and its impls count.
    let api = inline_api(
        &[
            ("lib.rs", "mod inner; pub use inner::{shown, Internal};"),
            ("inner.rs", inner),
        ],
        &[],
    );
    assert!(
        has_line(&api, "x::Internal: pub struct Internal"),
        "{api:#?}"
    );
    assert!(has_line(
        &api,
        "x::Internal: impl Internal: pub fn internal_method (& self)"
    ));
    assert!(has_line(
        &api,
        "x::Internal: impl std::fmt::Debug for Internal"
    ));
    assert!(!mentions(&api, "hidden"));

    // A `pub mod` makes its `pub` items nameable.
    let api = inline_api(&[("lib.rs", "pub mod inner;"), ("inner.rs", inner)], &[]);
    assert!(has_line(&api, "x::inner: pub mod inner"));
    assert!(has_line(&api, "x::inner::hidden: pub fn hidden ()"));
}

/// `pub use` chains are followed through private modules and globs, and an
/// impl counts wherever it is written.
#[test]
fn reexport_chains_are_followed() {
    let api = inline_api(
        &[
            (
                "lib.rs",
                "mod a; mod other; mod globbed; pub use a::Thing; pub use globbed::*;",
            ),
            (
                "a/mod.rs",
                "mod b; pub use b::Thing; pub use b::NotReexported;",
            ),
            (
                "a/b.rs",
                "pub struct Thing; pub struct NotReexported;
                 impl NotReexported { pub fn nope(&self) {} }",
            ),
            (
                "other.rs",
                "use crate::a::Thing as Renamed;
                 impl Renamed { pub fn elsewhere(&self) {} }",
            ),
            (
                "globbed.rs",
                "pub fn from_glob() {} fn private_in_glob() {}",
            ),
        ],
        &[],
    );
    assert!(has_line(&api, "x::Thing: pub struct Thing"), "{api:#?}");
    assert!(
        has_line(&api, "x::Thing: impl Renamed: pub fn elsewhere (& self)"),
        "{api:#?}"
    );
    assert!(
        has_line(&api, "x::from_glob: pub fn from_glob ()"),
        "{api:#?}"
    );
    for private in ["NotReexported", "nope", "private_in_glob"] {
        assert!(!mentions(&api, private), "{private} listed: {api:#?}");
    }
    assert!(!mentions(&api, "UNRESOLVED"), "{api:#?}");
}

/// `pub(crate)` items, fields and methods never count; hidden fields show
/// as `..`.
#[test]
fn crate_private_items_never_count() {
    let api = inline_api(
        &[
            (
                "lib.rs",
                "mod m; pub use m::Public; pub(crate) use m::CrateOnly;
                 pub(crate) fn crate_fn() {}",
            ),
            (
                "m.rs",
                "pub struct Public { pub open: u8, pub(crate) crate_field: u8 }
                 pub(crate) struct CrateOnly;
                 impl Public { pub(crate) fn crate_method(&self) {} fn private(&self) {} }
                 impl Clone for CrateOnly { fn clone(&self) -> Self { CrateOnly } }",
            ),
        ],
        &[],
    );
    assert!(
        has_line(&api, "x::Public: pub struct Public { open: u8, .. }"),
        "{api:#?}"
    );
    for private in [
        "CrateOnly",
        "crate_fn",
        "crate_field",
        "crate_method",
        "private",
    ] {
        assert!(!mentions(&api, private), "{private} listed: {api:#?}");
    }
}

/// A trait's items are listed: changing a method, making it required,
/// adding one or dropping `#[async_trait]` all show up.
#[test]
fn a_trait_change_shows_up() {
    let lib = |source: &str| inline_api(&[("lib.rs", source)], &[]);
    let base = "#[async_trait]
                pub trait Provider: Send + Sync {
                    /// Doc comments are not API.
                    async fn token(&self) -> u8;
                    fn name(&self) -> &str { \"\" }
                    type Out: Clone;
                    const N: usize;
                }";
    let before = lib(base);
    assert!(
        has_line(
            &before,
            "x::Provider: #[async_trait] pub trait Provider: Send + Sync"
        ),
        "{before:#?}"
    );
    assert!(has_line(
        &before,
        "x::Provider: trait fn async fn token (& self) -> u8 [required]"
    ));
    assert!(has_line(
        &before,
        "x::Provider: trait fn fn name (& self) -> & str [default]"
    ));
    assert!(has_line(
        &before,
        "x::Provider: trait type Out: Clone [required]"
    ));
    assert!(has_line(
        &before,
        "x::Provider: trait const N: usize [required]"
    ));
    assert_eq!(before, lib(&base.replace("Doc comments", "Documentation")));
    for changed in [
        base.replace("-> u8", "-> u16"),
        base.replace("{ \"\" }", ";"),
        base.replace("const N: usize;", "const N: usize; fn added(&self);"),
        base.replace("#[async_trait]", ""),
        base.replace("Send + Sync", "Send"),
        base.replace("type Out: Clone", "type Out"),
    ] {
        let after = lib(&changed);
        let (removed, added) = compare(&before, &after);
        assert!(
            verdict(&removed, &added).is_some(),
            "no change seen for {changed}"
        );
    }
}

/// Derives (in any order or split), `#[non_exhaustive]` and enum variants
/// are recorded: a removed derive shows up.
#[test]
fn a_removed_derive_shows_up() {
    let lib = |source: &str| inline_api(&[("lib.rs", source)], &[]);
    let before = lib("#[derive(Clone, Debug, PartialEq)] #[non_exhaustive] pub struct S { pub a: u8 }
                      #[derive(Clone, Copy)] pub enum E { A, #[non_exhaustive] B { x: u8 }, C(u16) }");
    assert!(
        has_line(
            &before,
            "x::S: #[derive(Clone, Debug, PartialEq)] #[non_exhaustive] pub struct S { a: u8 }"
        ),
        "{before:#?}"
    );
    assert!(has_line(
        &before,
        "x::E: #[derive(Clone, Copy)] pub enum E { A, #[non_exhaustive] B { x: u8 }, C(u16) }"
    ));
    // The same derives, written differently: no change.
    let same = lib(
        "#[derive(PartialEq)] #[derive(Debug, Clone)] #[non_exhaustive] pub struct S { pub a: u8 }
                    #[derive(Copy, Clone)] pub enum E { A, #[non_exhaustive] B { x: u8 }, C(u16) }",
    );
    assert_eq!(before, same);
    let without_clone = lib("#[derive(Debug, PartialEq)] #[non_exhaustive] pub struct S { pub a: u8 }
                             #[derive(Clone, Copy)] pub enum E { A, #[non_exhaustive] B { x: u8 }, C(u16) }");
    let (removed, added) = compare(&before, &without_clone);
    assert_eq!(
        removed,
        ["x::S: #[derive(Clone, Debug, PartialEq)] #[non_exhaustive] pub struct S { a: u8 }"]
    );
    assert_eq!(
        added,
        ["x::S: #[derive(Debug, PartialEq)] #[non_exhaustive] pub struct S { a: u8 }"]
    );
    let exhaustive = lib("#[derive(Clone, Debug, PartialEq)] pub struct S { pub a: u8 }
                          #[derive(Clone, Copy)] pub enum E { A, #[non_exhaustive] B { x: u8 }, C(u16) }");
    assert_ne!(before, exhaustive);
}

/// Types re-exported from the sibling crate are described from its source:
/// definition, fields, derives, impls there, and where they come from.
#[test]
fn reexported_foreign_types_are_described() {
    let sibling: &[(&str, &str)] = &[
        ("lib.rs", "mod opts; pub mod inner; pub use opts::Options;"),
        (
            "opts.rs",
            "#[derive(Clone, Copy, Default)] pub struct Options { pub a: bool }
             impl Options { pub fn on(self) -> Self { self } fn hidden(&self) {} }
             pub struct NotReexported;
             impl NotReexported { pub fn nope(&self) {} }",
        ),
        (
            "inner.rs",
            "pub const LIMIT: usize = 1;
             pub struct Scope { pub span: u8, own: bool }
             impl Scope { pub fn event(&self) {} pub(crate) fn crate_only(&self) {} }
             impl Drop for Scope { fn drop(&mut self) {} }",
        ),
    ];
    let api = inline_api(
        &[
            (
                "lib.rs",
                "mod telemetry; pub use telemetry::{Options, Scope, LIMIT};",
            ),
            (
                "telemetry.rs",
                "pub use sib::Options; pub use sib::inner::{LIMIT, Scope};
                 use sib as s;
                 pub(crate) struct Telemetry(s::NotReexported);",
            ),
        ],
        &[("sib", sibling)],
    );
    for line in [
        "x::Options: re-export of sib::Options",
        "x::Options: #[derive(Clone, Copy, Default)] pub struct Options { a: bool }",
        "x::Options: impl Options: pub fn on (self) -> Self",
        "x::Scope: re-export of sib::inner::Scope",
        "x::Scope: pub struct Scope { span: u8, .. }",
        "x::Scope: impl Scope: pub fn event (& self)",
        "x::Scope: impl Drop for Scope",
        "x::LIMIT: pub const LIMIT: usize",
    ] {
        assert!(has_line(&api, line), "missing {line}: {api:#?}");
    }
    for private in ["NotReexported", "nope", "hidden", "crate_only", "Telemetry"] {
        assert!(!mentions(&api, private), "{private} listed: {api:#?}");
    }
}

/// A public trait implemented by a crate-private type is not listed, nor is
/// a public type's impl of a crate-private trait; the crate's public trait
/// implemented for a foreign type is, under the trait.
#[test]
fn trait_impls_count_only_when_usable() {
    let api = inline_api(
        &[
            ("lib.rs", "mod m; pub use m::{Provider, Public};"),
            (
                "m.rs",
                "pub trait Provider {}
                 pub(crate) trait Sealed {}
                 pub struct Public;
                 struct Private;
                 impl Provider for Private {}
                 impl Sealed for Public {}
                 impl Provider for Public {}
                 impl<T: Provider> Provider for std::sync::Arc<T> {}",
            ),
        ],
        &[],
    );
    assert!(
        has_line(&api, "x::Public: impl x::Provider for Public"),
        "{api:#?}"
    );
    assert!(
        has_line(
            &api,
            "x::Provider: impl< T : Provider > x::Provider for std :: sync :: Arc < T >"
        ),
        "{api:#?}"
    );
    assert!(
        !mentions(&api, "Private") && !mentions(&api, "Sealed"),
        "{api:#?}"
    );
}
