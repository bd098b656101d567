//! The semver guard: every public item of the crate's source (its path with
//! its signature, fields or variants) is compared with the committed
//! baseline `public-api.txt`. A removed or changed item breaks users, an
//! added one commits the crate to it: both fail until the change is
//! accepted deliberately with `BATON_ACCEPT_PUBLIC_API=1 cargo test -p
//! baton-client --test public_api`, which rewrites the baseline for review.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::visit::Visit;

/// The variable that rewrites the baseline.
const ACCEPT_ENV: &str = "BATON_ACCEPT_PUBLIC_API";

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

/// The public fields of a struct or variant.
fn fields(fields: &syn::Fields, public_only: bool) -> String {
    let list: Vec<String> = fields
        .iter()
        .filter(|f| !public_only || is_public(&f.vis))
        .map(|f| match &f.ident {
            Some(name) => format!("{name}: {}", tokens(&f.ty)),
            None => tokens(&f.ty),
        })
        .collect();
    match fields {
        syn::Fields::Named(_) => format!("{{ {} }}", list.join(", ")),
        syn::Fields::Unnamed(_) => format!("({})", list.join(", ")),
        syn::Fields::Unit => String::new(),
    }
}

/// Collects one line per public item of one module file.
struct Lister {
    module: String,
    lines: Vec<String>,
}

impl Lister {
    fn push(&mut self, line: String) {
        self.lines.push(format!("{}: {line}", self.module));
    }
}

impl<'ast> Visit<'ast> for Lister {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if is_public(&item.vis) {
            self.push(format!("pub {}", tokens(&item.sig)));
        }
    }

    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        if is_public(&item.vis) {
            self.push(format!(
                "{}pub struct {}{} {}",
                non_exhaustive(&item.attrs),
                item.ident,
                tokens(&item.generics),
                fields(&item.fields, true)
            ));
        }
    }

    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        if is_public(&item.vis) {
            let variants: Vec<String> = item
                .variants
                .iter()
                .map(|v| {
                    format!(
                        "{}{}{}",
                        non_exhaustive(&v.attrs),
                        v.ident,
                        fields(&v.fields, false)
                    )
                })
                .collect();
            self.push(format!(
                "{}pub enum {}{} {{ {} }}",
                non_exhaustive(&item.attrs),
                item.ident,
                tokens(&item.generics),
                variants.join(", ")
            ));
        }
    }

    fn visit_item_const(&mut self, item: &'ast syn::ItemConst) {
        if is_public(&item.vis) {
            self.push(format!("pub const {}: {}", item.ident, tokens(&item.ty)));
        }
    }

    fn visit_item_type(&mut self, item: &'ast syn::ItemType) {
        if is_public(&item.vis) {
            self.push(format!(
                "pub type {}{} = {}",
                item.ident,
                tokens(&item.generics),
                tokens(&item.ty)
            ));
        }
    }

    fn visit_item_trait(&mut self, item: &'ast syn::ItemTrait) {
        if is_public(&item.vis) {
            self.push(format!("pub trait {}", item.ident));
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if is_public(&item.vis) {
            self.push(format!("pub use {}", tokens(&item.tree)));
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // Test modules are not API; public modules would be.
        if is_public(&item.vis) {
            self.push(format!("pub mod {}", item.ident));
        }
        if let Some((_, items)) = &item.content
            && !item.attrs.iter().any(|a| tokens(a).contains("test"))
        {
            for item in items {
                self.visit_item(item);
            }
        }
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        let target = tokens(&item.self_ty);
        if let Some((_, path, _)) = &item.trait_ {
            // What a user can rely on: the trait is implemented.
            self.push(format!(
                "impl{} {} for {target}",
                tokens(&item.generics),
                tokens(path)
            ));
            return;
        }
        for member in &item.items {
            if let syn::ImplItem::Fn(method) = member
                && is_public(&method.vis)
            {
                self.push(format!("impl {target}: pub {}", tokens(&method.sig)));
            }
        }
    }
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
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

/// The crate's public API, one sorted line per item.
fn public_api() -> BTreeSet<String> {
    let src = crate_dir().join("src");
    let mut lines = BTreeSet::new();
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let module = file
            .strip_prefix(&src)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "::");
        let mut lister = Lister {
            module,
            lines: Vec::new(),
        };
        lister.visit_file(&parsed);
        lines.extend(lister.lines);
    }
    lines
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
        current.iter().any(|l| l.contains("Publisher")),
        "the lister found no API"
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
