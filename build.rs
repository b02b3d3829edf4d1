//! Build facts for `edgesieve --version`: the target triple (EDGESIEVE_TARGET) and the git
//! revision of the checkout (EDGESIEVE_GIT_REV).
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
