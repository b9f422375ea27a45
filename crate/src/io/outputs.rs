//! Where a writing command (`convert`, `mix`, `demo-model`, `trace`) may write. An output never
//! is, contains or lies inside one of the command's inputs — paths are compared as the writes
//! would resolve them (canonical, every symlink followed, a dangling one too), with or without
//! `--force`. And `--force` replaces only what this tool wrote: a folder holding a model whose
//! manifest reads (with nothing beside that model's own files), or an empty folder.

use super::converted::Manifest;
use crate::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed at most while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// `path` as a write would reach it: absolute, `.` and `..` applied, every symlink followed —
/// also for the components that do not exist yet (a dangling symlink leads to its target).
pub fn resolved(path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mut links = 0;
    resolve_from(&cwd, path, &mut links)
}

fn resolve_from(base: &Path, path: &Path, links: &mut usize) -> Result<PathBuf> {
    let mut cur = if path.is_absolute() { PathBuf::from("/") } else { base.to_path_buf() };
    for c in path.components() {
        match c {
            Component::Prefix(p) => cur = PathBuf::from(p.as_os_str()),
            Component::RootDir => cur.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                cur.pop();
            }
            Component::Normal(name) => {
                let next = cur.join(name);
                match std::fs::symlink_metadata(&next) {
                    Ok(m) if m.file_type().is_symlink() => {
                        *links += 1;
                        if *links > MAX_LINKS {
                            return Err(Error::format(path.display(), format!("more than {MAX_LINKS} symlinks to follow")));
                        }
                        let target = std::fs::read_link(&next).map_err(|e| Error::io(&next, e))?;
                        cur = resolve_from(&cur, &target, links)?;
                    }
                    _ => cur = next,
                }
            }
        }
    }
    Ok(cur)
}

/// Refuses an output (`flag` names it, e.g. `--out`) that is, contains or lies inside one of the
/// `inputs` ((what, path): e.g. ("the --from folder", dir)).
pub fn check_not_an_input(flag: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let o = resolved(out)?;
    for (what, input) in inputs {
        let i = resolved(input)?;
        let how = if o == i {
            "is"
        } else if o.starts_with(&i) {
            "lies inside"
        } else if i.starts_with(&o) {
            "contains"
        } else {
            continue;
        };
        let shown = |p: &Path, r: &Path| if p == r { p.display().to_string() } else { format!("{} (resolved: {})", p.display(), r.display()) };
        return Err(Error::format(
            format!("{flag} {}", shown(out, &o)),
            format!("{how} {what} {}; a command never writes over, into or around its own input: choose another {flag}", shown(input, &i)),
        ));
    }
    Ok(())
}

/// What `--force` removes from an output folder: the model this tool wrote there.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    pub dir: PathBuf,
    /// The entries removed, sorted.
    pub files: Vec<String>,
    pub bytes: u64,
}

impl std::fmt::Display for Replaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replaced the model that was in {}: removed {} file{} ({} bytes): {}",
            self.dir.display(),
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            self.bytes,
            self.files.join(", ")
        )
    }
}

/// Whether a file name is one the model writer gives (`manifest.json`, `tokenizer.json`,
/// `model-00001-of-00003.safetensors`): an older write's stale shard may be replaced too.
fn written_by_us(name: &str) -> bool {
    let shard = name.strip_prefix("model-").and_then(|r| r.strip_suffix(".safetensors")).and_then(|r| r.split_once("-of-"));
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(name, "manifest.json" | "tokenizer.json") || shard.is_some_and(|(a, b)| digits(a) && digits(b))
}

/// Checks that `target` may be written as a model folder: absent or empty (`Ok(None)`); with
/// `force`, a folder holding only a model this tool wrote (`Ok(Some(what is removed))`). Anything
/// else is refused, naming what is there.
pub fn replaceable(target: &Path, force: bool) -> Result<Option<Replaced>> {
    let Ok(meta) = std::fs::symlink_metadata(target) else { return Ok(None) };
    if !meta.is_dir() {
        let what = if meta.file_type().is_symlink() { "a symlink" } else { super::files::kind_of(&meta) };
        return Err(Error::format(target.display(), format!("exists and is {what}, not a folder; an output folder is never written through it")));
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(target).map_err(|e| Error::io(target, e))? {
        let e = e.map_err(|e| Error::io(target, e))?;
        let is_file = e.file_type().map_err(|err| Error::io(e.path(), err))?.is_file();
        names.push((e.file_name().to_string_lossy().into_owned(), is_file));
    }
    if names.is_empty() {
        return Ok(None);
    }
    names.sort();
    if !force {
        return Err(Error::format(target.display(), "the output folder is not empty; pass --force to replace the model in it"));
    }
    let manifest = Manifest::read(target).map_err(|e| {
        Error::format(target.display(), format!("--force replaces only a folder holding a model this tool wrote, or an empty one; this one has no readable manifest.json ({e})"))
    })?;
    let listed = |n: &str| n == "manifest.json" || manifest.tokenizer.as_ref().is_some_and(|t| t.file == n) || manifest.shards.iter().any(|s| s.file == n);
    let foreign: Vec<&str> = names.iter().filter(|(n, file)| !*file || !(listed(n) || written_by_us(n))).map(|(n, _)| n.as_str()).collect();
    if !foreign.is_empty() {
        return Err(Error::format(
            target.display(),
            format!("--force replaces only a folder holding a model this tool wrote, and this one also holds {}; move them out or choose another --out", foreign.join(", ")),
        ));
    }
    let mut bytes = 0;
    for (n, _) in &names {
        bytes += std::fs::symlink_metadata(target.join(n)).map_err(|e| Error::io(target.join(n), e))?.len();
    }
    Ok(Some(Replaced { dir: target.to_path_buf(), files: names.into_iter().map(|(n, _)| n).collect(), bytes }))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sphinx-outputs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    #[test]
    fn paths_resolve_through_symlinks_that_exist_or_dangle() {
        let d = scratch("resolve");
        std::fs::create_dir(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        std::os::unix::fs::symlink("real/new-file", d.join("dangling")).unwrap();
        assert_eq!(resolved(&d.join("link/x/../y")).unwrap(), d.join("real/y"));
        assert_eq!(resolved(&d.join("dangling")).unwrap(), d.join("real/new-file"));
        assert_eq!(resolved(&d.join("real/./a/..")).unwrap(), d.join("real"));
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        assert!(resolved(&d.join("loop")).unwrap_err().to_string().contains("symlinks"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn outputs_never_touch_inputs() {
        let d = scratch("inputs");
        let input = d.join("in");
        std::fs::create_dir(&input).unwrap();
        std::os::unix::fs::symlink(&input, d.join("alias")).unwrap();
        let inputs = [("the --from folder", input.as_path())];
        for (out, how) in [(input.clone(), "is"), (d.join("alias"), "is"), (input.join("sub"), "lies inside"), (d.clone(), "contains"), (d.join("alias/x"), "lies inside")] {
            let e = check_not_an_input("--out", &out, &inputs).unwrap_err().to_string();
            assert!(e.contains(&format!(": {how} the --from folder")), "{}: {e}", out.display());
        }
        check_not_an_input("--out", &d.join("elsewhere"), &inputs).unwrap();
        check_not_an_input("--out", &d.join("in2"), &inputs).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_model_files_are_replaced() {
        assert!(written_by_us("model-00001-of-00012.safetensors") && written_by_us("tokenizer.json"));
        assert!(!written_by_us("model-1-of-2.safetensors") && !written_by_us("notes.txt"));
        let d = scratch("replace");
        assert_eq!(replaceable(&d.join("absent"), false).unwrap(), None);
        assert_eq!(replaceable(&d, true).unwrap(), None, "an empty folder");
        std::fs::write(d.join("notes.txt"), b"mine").unwrap();
        let e = replaceable(&d, false).unwrap_err().to_string();
        assert!(e.contains("not empty; pass --force"), "{e}");
        let e = replaceable(&d, true).unwrap_err().to_string();
        assert!(e.contains("no readable manifest.json"), "{e}");
        let e = replaceable(&d.join("notes.txt"), true).unwrap_err().to_string();
        assert!(e.contains("is a regular file, not a folder"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
