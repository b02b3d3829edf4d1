//! Build facts for `edgesieve --version`: the target triple (EDGESIEVE_TARGET) and the git
//! revision of the checkout (EDGESIEVE_GIT_REV); and, for `edgesieve config`, the doc comment of
//! every configuration key (`$OUT_DIR/config_docs.rs`, read from the `*Config` structs in src/).
//!
//! The revision comes from, in order: the EDGESIEVE_GIT_REV environment variable (release builds
//! from a tarball, or a container without git), `git rev-parse`, reading .git/HEAD by hand (cross
//! images have no git binary but see the mounted checkout), else "unknown". Never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=EDGESIEVE_GIT_REV");

    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=EDGESIEVE_TARGET={target}");

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git_dir = find_git_dir(&manifest_dir);
    if let Some(dir) = &git_dir {
        // Rebuild when HEAD moves: HEAD itself (branch switch, detached checkout) and the ref it
        // names (a commit on the branch), plus packed-refs. Only paths that exist: cargo treats a
        // missing one as always stale.
        watch(&dir.join("HEAD"));
        watch(&dir.join("packed-refs"));
        if let Some(r) = head_ref(dir) {
            watch(&dir.join(r));
        }
    }

    let rev = std::env::var("EDGESIEVE_GIT_REV")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
        .or_else(|| git_dir.as_ref().and_then(|_| rev_from_git(&manifest_dir)))
        .or_else(|| git_dir.as_deref().and_then(rev_from_files))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EDGESIEVE_GIT_REV={rev}");

    println!("cargo:rerun-if-changed=src");
    let mut docs = Vec::new();
    collect_config_docs(&manifest_dir.join("src"), &mut docs);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let mut text = String::from(
        "/// (struct, field, field type, doc) of every field of the `*Config` structs in src/;\n\
         /// field \"\" holds the struct's own doc.\n\
         pub const CONFIG_DOCS: &[(&str, &str, &str, &str)] = &[\n",
    );
    for (st, field, ty, doc) in &docs {
        text.push_str(&format!("    ({st:?}, {field:?}, {ty:?}, {doc:?}),\n"));
    }
    text.push_str("];\n");
    // A failed write surfaces as a compile error naming the missing file.
    let _ = std::fs::write(out.join("config_docs.rs"), text);
}

/// Walks `dir` for `pub struct <Name>Config {` blocks and records each `pub` field's `///` doc.
fn collect_config_docs(dir: &Path, out: &mut Vec<(String, String, String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_config_docs(&path, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut doc: Vec<String> = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let t = line.trim();
            if let Some(d) = t.strip_prefix("///") {
                doc.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                continue;
            }
            if t.starts_with("#[") {
                continue;
            }
            match &current {
                None => {
                    if let Some(name) = t
                        .strip_prefix("pub struct ")
                        .and_then(|r| r.strip_suffix(" {"))
                        .filter(|n| n.ends_with("Config"))
                    {
                        out.push((
                            name.to_string(),
                            String::new(),
                            String::new(),
                            doc.join("\n"),
                        ));
                        current = Some(name.to_string());
                    }
                }
                Some(st) => {
                    if t == "}" {
                        current = None;
                    } else if let Some((field, ty)) =
                        t.strip_prefix("pub ").and_then(|r| r.split_once(':'))
                    {
                        let ty = ty.trim().trim_end_matches(',').to_string();
                        out.push((st.clone(), field.trim().to_string(), ty, doc.join("\n")));
                    }
                }
            }
            doc.clear();
        }
    }
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The checkout's git directory: `.git` as a directory, or the `gitdir:` a worktree's `.git`
/// file points to.
fn find_git_dir(start: &Path) -> Option<PathBuf> {
    let dot_git = start.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let path = start.join(target);
    path.is_dir().then_some(path)
}

/// `refs/heads/<branch>` when HEAD names a branch.
fn head_ref(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    head.trim()
        .strip_prefix("ref:")
        .map(|r| r.trim().to_string())
}

fn rev_from_git(dir: &Path) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && is_hex(&rev)).then_some(rev)
}

fn rev_from_files(git_dir: &Path) -> Option<String> {
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let full = match head_ref(git_dir) {
        None => head.to_string(),
        Some(r) => match std::fs::read_to_string(git_dir.join(&r)) {
            Ok(s) => s.trim().to_string(),
            Err(_) => {
                let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
                packed
                    .lines()
                    .filter_map(|l| l.split_once(' '))
                    .find(|(_, name)| *name == r)
                    .map(|(sha, _)| sha.to_string())?
            }
        },
    };
    (full.len() >= 12 && is_hex(&full)).then(|| full[..12].to_string())
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}
