//! The one door holds by construction: a `Caller` is made only by its authenticators.
//!
//! `Caller`'s fields are private, so code can only get a caller from a named constructor. This test
//! keeps each constructor that grants something in the file of the authenticator it belongs to:
//! anyone else using one (a handler minting a principal, a service acting as an identity it has
//! not proven, a task borrowing another's actor) fails here. Test code (`#[cfg(test)]` modules and
//! `tests/` directories) may build any caller. The lists only ever shrink; a new authenticator is
//! a design change to review, added here with its reason.

use std::path::{Path, PathBuf};

/// Each constructor and the only source files that may call it.
const ALLOWED: &[(&str, &[&str])] = &[
    // Token verification: the directory checks the signature, audience and principal.
    ("bearer", &["byos-identity/src/directory.rs"]),
    // Acting as a resource's managed identity, after proving the resource has it now.
    ("service_identity", &["byos-identity/src/directory.rs"]),
    // The control socket's listener marks its requests; only that marker makes an operator.
    ("operator", &["byos-identity/src/api/operator.rs"]),
    // Shared Key and SAS verification against the account's keys / user delegation keys.
    ("shared_key", &["byos-storage/src/blob/auth.rs", "byos-cognitive/src/dataplane.rs"]),
    ("signature", &["byos-storage/src/blob/sas.rs"]),
    // Each background task makes its own actor, once, where it is spawned.
    (
        "actor",
        &[
            "byos-keyvault/src/rotation.rs",
            "byos-storage/src/blob/sweep.rs",
            "byos-storage/src/cmk.rs",
            "byos-cognitive/src/provider.rs",
            "byos-cognitive/src/transcriptions.rs",
        ],
    ),
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under each crate's `src/`, as `crate/src/...`.
fn sources() -> std::io::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = std::fs::read_dir(crates_dir())?
        .filter_map(|entry| Some(entry.ok()?.path().join("src")))
        .filter(|path| path.is_dir())
        .collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)?;
                let name = path.strip_prefix(crates_dir()).map_err(std::io::Error::other)?;
                let name = name.to_string_lossy().replace('\\', "/");
                found.push((name, text));
            }
        }
    }
    Ok(found)
}

/// A file without its `#[cfg(test)]` items (a test module's braces counted to its end).
fn non_test_part(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        kept.push_str(&rest[..at]);
        let item = &rest[at..];
        let Some(open) = item.find(['{', ';']) else { return kept };
        if item.as_bytes()[open] == b';' {
            rest = &item[open + 1..];
            continue;
        }
        let mut depth = 0usize;
        let end = item[open..]
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(open + i + 1)
            })
            .unwrap_or(item.len());
        rest = &item[end..];
    }
    kept.push_str(rest);
    kept
}

#[test]
fn caller_constructors_are_used_only_by_their_authenticators() -> std::io::Result<()> {
    let sources = sources()?;
    assert!(sources.iter().any(|(name, _)| name == "byos-core/src/caller.rs"), "the scan must see the workspace");
    let mut misuses = Vec::new();
    for (name, text) in &sources {
        if name == "byos-core/src/caller.rs" {
            continue;
        }
        let code = &non_test_part(text);
        if code.contains("Caller as ") {
            misuses.push(format!("{name}: renames Caller, which would hide its constructors from this check"));
        }
        for (constructor, files) in ALLOWED {
            let needle = format!("Caller::{constructor}");
            let uses = code.match_indices(&needle).filter(|(at, _)| {
                // `Caller::actor` must not match `Caller::actor_kind`, say.
                !code[at + needle.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if uses.count() > 0 && !files.contains(&name.as_str()) {
                misuses.push(format!("{name}: Caller::{constructor} is reserved to {files:?}"));
            }
        }
    }
    assert!(misuses.is_empty(), "callers made outside their authenticators:\n{}", misuses.join("\n"));
    Ok(())
}

/// The allow-list names only files that still use the constructor: a stale entry would let a new
/// use slip in unreviewed.
#[test]
fn every_allowed_constructor_use_exists() -> std::io::Result<()> {
    let sources = sources()?;
    for (constructor, files) in ALLOWED {
        for file in *files {
            let text = sources.iter().find(|(name, _)| name == file).map(|(_, text)| text.as_str());
            assert!(
                text.is_some_and(|text| non_test_part(text).contains(&format!("Caller::{constructor}("))),
                "{file} no longer calls Caller::{constructor}: remove it from the list"
            );
        }
    }
    Ok(())
}
