//! `tessera objects get` and `tessera tasks result --save`: an object's bytes out of the local
//! object store or a server's `GET /api/v1/objects/{id}`, checked against their SHA-256 on the
//! way. Object names come from whoever stored the object: they are made safe before they name
//! a file (one file name, never a path), and an existing file is never replaced by a name.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tessera_store::{Objects, Store};

use crate::config::Settings;
use crate::remote::{Remote, checked_id};

/// Where objects are read from.
pub enum Source {
    Local {
        store: Arc<dyn Store>,
        objects: Objects,
    },
    Remote(Remote),
}

/// What is known of an object before its bytes are read.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub name: Option<String>,
    pub sha256: Option<String>,
}

impl Source {
    pub fn local(settings: &Settings) -> Result<Source> {
        if settings.ephemeral {
            bail!("--ephemeral keeps no objects");
        }
        Ok(Source::Local {
            store: settings.open_store()?,
            objects: settings.open_objects()?,
        })
    }

    /// Streams object `id` into `out`, checking the bytes against the SHA-256 known from the
    /// reference, the store or the server (ETag). Returns the name the object was stored with.
    async fn copy(&self, id: &str, known: &Known, out: &mut dyn Write) -> Result<Option<String>> {
        checked_id("object", id)?;
        let (mut stream, name, sha256): (
            futures::stream::BoxStream<'static, Result<bytes::Bytes>>,
            Option<String>,
            Option<String>,
        ) = match self {
            Source::Local { store, objects } => {
                let meta = store
                    .object(id)?
                    .with_context(|| format!("object `{id}` not found"))?;
                let stream = objects.stream(id).await?;
                let stream = stream.map(|r| r.map_err(anyhow::Error::from)).boxed();
                (stream, meta.name, Some(meta.sha256))
            }
            Source::Remote(remote) => {
                let req = remote.request(reqwest::Method::GET, &format!("/api/v1/objects/{id}"));
                let resp = remote.send(req).await?;
                let header = |h: reqwest::header::HeaderName| {
                    resp.headers()
                        .get(h)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let etag = header(reqwest::header::ETAG).map(|e| e.trim_matches('"').to_string());
                let name = header(reqwest::header::CONTENT_DISPOSITION).and_then(|d| {
                    d.split_once("filename=\"")
                        .map(|(_, rest)| rest.trim_end_matches('"').to_string())
                });
                let stream = resp
                    .bytes_stream()
                    .map(|r| r.map_err(anyhow::Error::from))
                    .boxed();
                (stream, name, etag)
            }
        };
        let expected = known.sha256.clone().or(sha256);
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading object `{id}`"))?;
            hasher.update(&chunk);
            out.write_all(&chunk)?;
        }
        out.flush()?;
        let got = hex::encode(hasher.finalize());
        if let Some(want) = expected.filter(|s| !s.is_empty())
            && want != got
        {
            bail!("object `{id}`: the bytes read have SHA-256 {got}, not the recorded {want}");
        }
        Ok(known.name.clone().or(name))
    }
}

/// `tessera objects get ID [-o FILE]`.
pub fn get(source: &Source, id: &str, output: Option<&Path>) -> Result<ExitCode> {
    let runtime = crate::remote::runtime()?;
    match output {
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            runtime
                .block_on(source.copy(id, &Known::default(), &mut out))
                .map_err(|e| match e.downcast::<std::io::Error>() {
                    Ok(io) => crate::output::stdout_error(io),
                    Err(e) => e,
                })?;
        }
        Some(path) if path.is_dir() => {
            // The name comes from the object: made safe, never replacing a file.
            let saved = runtime.block_on(save_one(
                source,
                id,
                &Known::default(),
                path,
                &mut HashSet::new(),
            ))?;
            errln!("saved object {id} to {}", saved.display());
        }
        Some(path) => {
            // A path the user chose: written whole beside it, then renamed over it.
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile_in(dir)?;
            runtime.block_on(source.copy(id, &Known::default(), &mut tmp.1))?;
            std::fs::rename(&tmp.0, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            tmp.0 = PathBuf::new();
            errln!("saved object {id} to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A temporary file in `dir`, removed on drop unless its path was taken (set empty).
struct Temp(PathBuf, std::fs::File);

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn tempfile_in(dir: &Path) -> Result<Temp> {
    let path = dir.join(format!(".tessera-{}.part", uuid::Uuid::new_v4().simple()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(Temp(path, file))
}

/// Writes object `id` into `dir` under its name made safe and unique (`taken` holds the names
/// chosen by this run), without ever replacing a file. Returns the file's path.
async fn save_one(
    source: &Source,
    id: &str,
    known: &Known,
    dir: &Path,
    taken: &mut HashSet<String>,
) -> Result<PathBuf> {
    let mut tmp = tempfile_in(dir)?;
    let name = source.copy(id, known, &mut tmp.1).await?;
    let base = safe_file_name(name.as_deref(), id);
    for n in 1u32.. {
        let candidate = numbered(&base, n);
        if taken.contains(&candidate) {
            continue;
        }
        let target = dir.join(&candidate);
        // A hard link fails if the name exists: no file is ever replaced, even by a race.
        match std::fs::hard_link(&tmp.0, &target) {
            Ok(()) => {
                taken.insert(candidate);
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // A file system without hard links: a copy into a file created only if absent.
            Err(_) => match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
            {
                Ok(mut file) => {
                    std::io::copy(&mut std::fs::File::open(&tmp.0)?, &mut file)
                        .with_context(|| format!("cannot write {}", target.display()))?;
                    taken.insert(candidate);
                    return Ok(target);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot write {}", target.display()));
                }
            },
        }
    }
    unreachable!("some number is free")
}

/// `name.ext`, then `name-2.ext`, `name-3.ext`…
fn numbered(base: &str, n: u32) -> String {
    if n == 1 {
        return base.to_string();
    }
    match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}-{n}.{ext}"),
        _ => format!("{base}-{n}"),
    }
}

/// An object's name as one safe file name: its last path component only, no leading dots
/// (no `..`, no hidden files), no control or separator characters, at most 200 bytes; the
/// object id when nothing is left.
pub fn safe_file_name(name: Option<&str>, id: &str) -> String {
    let last = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    let mut out = String::new();
    for c in trimmed.chars() {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() { id.to_string() } else { out }
}

/// Saves every object a result names into `dir`; each reference gains `saved_to`. The same
/// object named twice is written once. (Async: a server's connections belong to the runtime
/// that opened them.)
pub async fn save_result(source: &Source, result: &mut Value, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut taken = HashSet::new();
    let mut saved: std::collections::HashMap<String, PathBuf> = Default::default();
    save_in(source, result, dir, &mut taken, &mut saved).await?;
    Ok(saved.len())
}

async fn save_in(
    source: &Source,
    v: &mut Value,
    dir: &Path,
    taken: &mut HashSet<String>,
    saved: &mut std::collections::HashMap<String, PathBuf>,
) -> Result<()> {
    match v {
        Value::Object(m) => {
            if let Some(id) = m.get("$object").and_then(Value::as_str).map(str::to_string) {
                let path = match saved.get(&id) {
                    Some(p) => p.clone(),
                    None => {
                        let known = Known {
                            name: m.get("name").and_then(Value::as_str).map(str::to_string),
                            sha256: m.get("sha256").and_then(Value::as_str).map(str::to_string),
                        };
                        let p = save_one(source, &id, &known, dir, taken).await?;
                        saved.insert(id, p.clone());
                        p
                    }
                };
                m.insert("saved_to".into(), Value::String(path.display().to_string()));
            } else {
                for x in m.values_mut() {
                    Box::pin(save_in(source, x, dir, taken, saved)).await?;
                }
            }
        }
        Value::Array(items) => {
            for x in items {
                Box::pin(save_in(source, x, dir, taken, saved)).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_safe_file_name() {
        let id = "0b1c";
        for (name, want) in [
            (Some("photo.jpg"), "photo.jpg"),
            (Some("../../etc/passwd"), "passwd"),
            (Some(".."), id),
            (Some("a/.."), id),
            (Some(".bashrc"), "bashrc"),
            (Some("C:\\x\\evil.exe"), "evil.exe"),
            (Some("a\nb:c"), "a_b_c"),
            (Some("Łódź.png"), "Łódź.png"),
            (Some(""), id),
            (None, id),
        ] {
            assert_eq!(safe_file_name(name, id), want, "{name:?}");
        }
        assert!(safe_file_name(Some(&"é".repeat(300)), id).len() <= 200);
        assert_eq!(numbered("a.tar.gz", 3), "a.tar-3.gz");
        assert_eq!(numbered("README", 2), "README-2");
    }
}
