//! Object store for binary values: bytes go to an `object_store` backend (local
//! filesystem under the data dir by default; S3 can be switched on later), streamed in chunks
//! and hashed on the way; JSON carries only the reference `{"$object": id, ...}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::StoreError;

/// Why a streamed upload was not stored.
#[derive(Debug)]
pub enum PutStreamError<E> {
    /// The source stream failed (e.g. the client went away).
    Source(E),
    /// More bytes than allowed.
    TooLarge(u64),
}

/// What JSON knows of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub id: String,
    pub name: Option<String>,
    pub size: u64,
    pub content_type: Option<String>,
    pub sha256: String,
    pub created_at: u64,
}

impl ObjectMeta {
    /// The reference placed in node inputs and outputs.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("$object".into(), Value::String(self.id.clone()));
        m.insert(
            "name".into(),
            self.name.clone().map(Value::String).unwrap_or(Value::Null),
        );
        m.insert("size".into(), Value::from(self.size));
        m.insert(
            "content_type".into(),
            self.content_type
                .clone()
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        m.insert("sha256".into(), Value::String(self.sha256.clone()));
        Value::Object(m)
    }

    /// Reads a reference back; `None` when `v` is not an object reference.
    pub fn from_json(v: &Value) -> Option<ObjectMeta> {
        let m = v.as_object()?;
        let id = m.get("$object")?.as_str()?.to_string();
        Some(ObjectMeta {
            id,
            name: m.get("name").and_then(Value::as_str).map(str::to_string),
            size: m.get("size").and_then(Value::as_u64).unwrap_or(0),
            content_type: m
                .get("content_type")
                .and_then(Value::as_str)
                .map(str::to_string),
            sha256: m
                .get("sha256")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            created_at: 0,
        })
    }
}

/// Collects the ids of every object reference (`{"$object": id, …}`) in a value.
pub(crate) fn object_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => match m.get("$object").and_then(Value::as_str) {
            Some(id) => out.push(id.to_string()),
            None => m.values().for_each(|x| object_ids(x, out)),
        },
        Value::Array(items) => items.iter().for_each(|x| object_ids(x, out)),
        _ => {}
    }
}

/// Read buffer size.
const CHUNK: usize = 1 << 20;
/// Upload part size: S3 refuses parts under 5 MiB (but the last).
const PART: usize = 5 << 20;
/// Parts in flight per upload: bounds memory to about `PART * (PARTS_IN_FLIGHT + 1)`.
const PARTS_IN_FLIGHT: usize = 2;

/// The object store of one engine.
#[derive(Clone)]
pub struct Objects {
    backend: Arc<dyn ObjectStore>,
    /// Set for the local filesystem backend: objects can be used in place, without a copy.
    local_root: Option<PathBuf>,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects")
            .field("local_root", &self.local_root)
            .finish()
    }
}

fn object_err(e: object_store::Error) -> StoreError {
    // A full disk under the local store is said so, whatever layer wrapped it.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::StorageFull
        {
            return StoreError::Full(e.to_string());
        }
        source = err.source();
    }
    StoreError::Object(e.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Objects {
    /// Objects kept as files under `dir`.
    pub fn local(dir: &Path) -> Result<Objects, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let fs = LocalFileSystem::new_with_prefix(dir).map_err(object_err)?;
        Ok(Objects {
            backend: Arc::new(fs),
            local_root: Some(dir.to_path_buf()),
        })
    }

    /// Objects in an S3-compatible bucket: `s3://bucket/prefix`, credentials and endpoint from
    /// the usual `AWS_*` variables, overridden by `options` (e.g. `("endpoint", url)`,
    /// `("allow_http", "true")`).
    pub fn s3(url: &str, options: &[(&str, &str)]) -> Result<Objects, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        // TLS for the S3 client (ring, as everywhere in Tessera); already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            StoreError::Object(format!("`{url}` is not an s3://bucket/prefix URL"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Object(format!("`{url}` names no bucket")));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (key, value) in options {
            let key: AmazonS3ConfigKey = key
                .parse()
                .map_err(|e| StoreError::Object(format!("S3 option `{key}`: {e}")))?;
            builder = builder.with_config(key, *value);
        }
        let s3 = builder.build().map_err(object_err)?;
        let prefix = prefix.trim_matches('/');
        let backend: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        Ok(Objects {
            backend,
            local_root: None,
        })
    }

    fn location(id: &str) -> ObjectPath {
        ObjectPath::from(format!("objects/{id}"))
    }

    /// Stores a file, streamed in 1 MiB chunks and hashed on the way.
    pub async fn put_file(
        &self,
        path: &Path,
        name: Option<String>,
        content_type: Option<String>,
    ) -> Result<ObjectMeta, StoreError> {
        let file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
        let name = name.or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()));
        self.put_open_file(file, name, content_type)
            .await
            .map_err(|e| match e {
                StoreError::Io { source, .. } => io_err(path)(source),
                other => other,
            })
    }

    /// Stores an already opened file (checked by the caller), streamed like [`Self::put_file`].
    pub async fn put_open_file(
        &self,
        file: tokio::fs::File,
        name: Option<String>,
        content_type: Option<String>,
    ) -> Result<ObjectMeta, StoreError> {
        let chunks = Box::pin(futures::stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        }));
        match self
            .put_stream(chunks, name, content_type, u64::MAX)
            .await?
        {
            Ok(meta) => Ok(meta),
            Err(PutStreamError::Source(e)) => Err(io_err(Path::new("(opened file)"))(e)),
            Err(PutStreamError::TooLarge(_)) => unreachable!("no limit on files"),
        }
    }

    /// Stores a stream of chunks (an upload, a file), hashed on the way; never held whole in
    /// memory. The inner error says why the stream was refused (the partial object is aborted).
    pub async fn put_stream<S, E>(
        &self,
        mut stream: S,
        name: Option<String>,
        content_type: Option<String>,
        max_size: u64,
    ) -> Result<Result<ObjectMeta, PutStreamError<E>>, StoreError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    {
        let id = uuid::Uuid::new_v4().to_string();
        let upload = self
            .backend
            .put_multipart(&Self::location(&id))
            .await
            .map_err(object_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Ok(Err(PutStreamError::Source(e)));
                }
            };
            size += chunk.len() as u64;
            if size > max_size {
                let _ = writer.abort().await;
                return Ok(Err(PutStreamError::TooLarge(max_size)));
            }
            hasher.update(&chunk);
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(object_err)?;
            writer.put(chunk);
        }
        writer.finish().await.map_err(object_err)?;
        self.seal(&id).await?;
        Ok(Ok(ObjectMeta {
            content_type: content_type.or_else(|| guess_content_type(name.as_deref())),
            id,
            name,
            size,
            sha256: hex::encode(hasher.finalize()),
            created_at: now_millis(),
        }))
    }

    /// Makes a stored object's local file read-only (0444): objects never change once stored
    /// (their id stands for their bytes and hash). Commands never get this file but a copy
    /// (the engine's `inputs.rs`): mode bits do not stop the file's owner.
    async fn seal(&self, id: &str) -> Result<(), StoreError> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(path) = self.local_path(id) {
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
                .await
                .map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Deletes an object's bytes (missing is fine).
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        if !valid_object_id(id) {
            return Ok(());
        }
        match self.backend.delete(&Self::location(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_err(e)),
        }
    }

    /// Starts reading an object; an unknown or malformed id is `NotFound`.
    async fn open(&self, id: &str) -> Result<object_store::GetResult, StoreError> {
        let not_found = || StoreError::NotFound {
            what: "object",
            id: id.to_string(),
        };
        if !valid_object_id(id) {
            return Err(not_found());
        }
        self.backend
            .get(&Self::location(id))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => not_found(),
                other => object_err(other),
            })
    }

    /// Opens an object for streaming out.
    pub async fn stream(
        &self,
        id: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<bytes::Bytes, StoreError>>, StoreError>
    {
        let got = self.open(id).await?;
        Ok(Box::pin(got.into_stream().map(|r| r.map_err(object_err))))
    }

    /// Stores bytes already in memory (small values, e.g. an HTTP response body).
    pub async fn put_bytes(
        &self,
        bytes: bytes::Bytes,
        name: Option<String>,
        content_type: Option<String>,
    ) -> Result<ObjectMeta, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        self.backend
            .put(&Self::location(&id), bytes.into())
            .await
            .map_err(object_err)?;
        self.seal(&id).await?;
        Ok(ObjectMeta {
            content_type: content_type.or_else(|| guess_content_type(name.as_deref())),
            id,
            name,
            size,
            sha256,
            created_at: now_millis(),
        })
    }

    /// Whether the object store answers (for health checks): the local directory exists and
    /// can be listed; a bucket answers a metadata request (an absent object is an answer).
    pub async fn check(&self) -> Result<(), StoreError> {
        if let Some(root) = &self.local_root {
            let listed = tokio::fs::read_dir(root).await.map(|_| ());
            let objects = root.join("objects");
            let dir_ok = match tokio::fs::metadata(&objects).await {
                Ok(m) if !m.is_dir() => Err(std::io::Error::other("not a directory")),
                // Made by the first object stored.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.map(|_| ()),
            };
            return listed
                .map_err(io_err(root))
                .and_then(|()| dir_ok.map_err(io_err(&objects)));
        }
        match self.backend.head(&ObjectPath::from("health/probe")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_err(e)),
        }
    }

    /// The object's file when the backend is local: used in place, nothing copied.
    pub fn local_path(&self, id: &str) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        valid_object_id(id).then(|| root.join("objects").join(id))
    }

    /// Copies an object into `dest`, streamed.
    pub async fn get_to_file(&self, id: &str, dest: &Path) -> Result<(), StoreError> {
        let got = self.open(id).await?;
        let mut out = tokio::fs::File::create(dest).await.map_err(io_err(dest))?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(object_err)?;
            out.write_all(&chunk).await.map_err(io_err(dest))?;
        }
        out.flush().await.map_err(io_err(dest))?;
        Ok(())
    }

    pub async fn get_bytes(&self, id: &str) -> Result<bytes::Bytes, StoreError> {
        let got = self
            .backend
            .get(&Self::location(id))
            .await
            .map_err(object_err)?;
        got.bytes().await.map_err(object_err)
    }
}

/// Object ids are UUIDs; anything else is refused before it reaches a path.
fn valid_object_id(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn guess_content_type(name: Option<&str>) -> Option<String> {
    let ext = name?.rsplit_once('.')?.1.to_ascii_lowercase();
    let t = match ext.as_str() {
        "json" => "application/json",
        "csv" => "text/csv",
        "txt" | "log" => "text/plain",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "tif" | "tiff" => "image/tiff",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    };
    Some(t.to_string())
}
