//! The object store: immutable byte objects (encrypted segments) addressed by id.
//!
//! Failure contract: an object becomes readable only after [`ObjectWriter::finish`] returned, and
//! then it is durable; a writer dropped before `finish` leaves nothing readable. Reads of a missing
//! object fail with [`ObjectError::NotFound`].

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("object {0} not found")]
    NotFound(String),
    #[error("object store failure: {0}")]
    Backend(String),
}

fn backend(e: impl std::fmt::Display) -> ObjectError {
    ObjectError::Backend(e.to_string())
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Starts a new object; nothing is visible until the writer finishes.
    async fn create(&self, id: &str) -> Result<Box<dyn ObjectWriter>, ObjectError>;
    /// Reads up to `len` bytes at `offset` (fewer only at the end of the object).
    async fn read_at(&self, id: &str, offset: u64, len: usize) -> Result<Vec<u8>, ObjectError>;
    async fn delete(&self, id: &str) -> Result<(), ObjectError>;
    /// Every finished object with its age, for garbage collection.
    async fn list(&self) -> Result<Vec<(String, std::time::Duration)>, ObjectError>;
}

#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<(), ObjectError>;
    /// Makes the object durable and visible.
    async fn finish(self: Box<Self>) -> Result<(), ObjectError>;
}

pub type SharedObjects = Arc<dyn ObjectStore>;

/// Objects as files under a directory, fanned out by the id's first two characters.
pub struct DirObjectStore {
    root: PathBuf,
    open_files: OpenFiles,
}

impl DirObjectStore {
    /// Opens the store, discarding partial objects a previous run left behind (a crash during
    /// an upload): nothing references them, and nothing can be writing them yet.
    pub fn open(root: &Path) -> Result<Self, ObjectError> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(backend)?;
        for entry in std::fs::read_dir(&tmp).map_err(backend)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(DirObjectStore { root: root.to_path_buf(), open_files: OpenFiles::default() })
    }

    fn path(&self, id: &str) -> Result<PathBuf, ObjectError> {
        if id.len() < 3 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ObjectError::Backend(format!("invalid object id {id}")));
        }
        Ok(self.root.join(&id[..2]).join(id))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ObjectError> + Send + 'static,
) -> Result<T, ObjectError> {
    tokio::task::spawn_blocking(f).await.map_err(backend)?
}

#[async_trait]
impl ObjectStore for DirObjectStore {
    async fn create(&self, id: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        let target = self.path(id)?;
        let temp = self.root.join("tmp").join(format!("{id}.part"));
        // Creating a file is a metadata operation that does not wait for the disk.
        let file = std::fs::File::create(&temp).map_err(backend)?;
        Ok(Box::new(DirWriter { file: Some(file), temp, target, finished: false }))
    }

    async fn read_at(&self, id: &str, offset: u64, len: usize) -> Result<Vec<u8>, ObjectError> {
        let file = self.open_files.get(id, &self.path(id)?)?;
        // A small read from the page cache costs less than the hop to the blocking pool and back.
        if len <= INLINE_READ_LIMIT {
            return read_file_at(&file, offset, len);
        }
        blocking(move || read_file_at(&file, offset, len)).await
    }

    async fn delete(&self, id: &str) -> Result<(), ObjectError> {
        let path = self.path(id)?;
        self.open_files.forget(id);
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(backend(e)),
        })
        .await
    }

    async fn list(&self) -> Result<Vec<(String, std::time::Duration)>, ObjectError> {
        let root = self.root.clone();
        blocking(move || list_dir(&root)).await
    }
}

/// Reads up to this many bytes on the calling task instead of the blocking pool.
const INLINE_READ_LIMIT: usize = 1100 * 1024;

/// Reads up to `len` bytes at `offset` (positioned reads, so one open file serves every reader).
/// Readers ask for whole chunks, so the last read of an object usually reaches past its end; a
/// regular file returns less than asked only there, which ends the read without another call.
fn read_file_at(file: &std::fs::File, offset: u64, len: usize) -> Result<Vec<u8>, ObjectError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(n) if n < len - filled => {
                filled += n;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(backend(e)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Open files of recently read objects. Finished objects never change, so a read needs one
/// positioned read instead of open, seek, read and close (system calls are dear on some hosts:
/// they were half of a small GET's cost). Deleting an object forgets its file first.
#[derive(Default)]
struct OpenFiles {
    files: std::sync::Mutex<std::collections::HashMap<String, Arc<std::fs::File>>>,
}

/// Open files kept at most; all are let go when the set is full (reads then reopen what they use).
const MAX_OPEN_FILES: usize = 128;

impl OpenFiles {
    fn get(&self, id: &str, path: &Path) -> Result<Arc<std::fs::File>, ObjectError> {
        if let Some(file) = self.lock().get(id) {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(std::fs::File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound { ObjectError::NotFound(id.to_owned()) } else { backend(e) }
        })?);
        let mut files = self.lock();
        if files.len() >= MAX_OPEN_FILES {
            files.clear();
        }
        files.insert(id.to_owned(), Arc::clone(&file));
        Ok(file)
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<std::fs::File>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn list_dir(root: &Path) -> Result<Vec<(String, std::time::Duration)>, ObjectError> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(root).map_err(backend)?.flatten() {
        if fan.file_name() == "tmp" || !fan.path().is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(fan.path()).map_err(backend)?.flatten() {
            let age =
                entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
            out.push((entry.file_name().to_string_lossy().into_owned(), age));
        }
    }
    Ok(out)
}

struct DirWriter {
    file: Option<std::fs::File>,
    temp: PathBuf,
    target: PathBuf,
    finished: bool,
}

#[async_trait]
impl ObjectWriter for DirWriter {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<(), ObjectError> {
        // A buffered write of one I/O unit lands in the page cache; it is cheaper than the hop to
        // the blocking pool. Waiting for the disk happens in `finish`, on the pool.
        let file = self.file.as_mut().ok_or_else(|| ObjectError::Backend("writer already failed".into()))?;
        file.write_all(&bytes).map_err(backend)
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ObjectError> {
        let file = self.file.take().ok_or_else(|| ObjectError::Backend("writer already failed".into()))?;
        let (temp, target) = (self.temp.clone(), self.target.clone());
        blocking(move || {
            file.sync_data().map_err(backend)?;
            let dir = target.parent().ok_or_else(|| ObjectError::Backend("object path has no parent".into()))?;
            std::fs::create_dir_all(dir).map_err(backend)?;
            std::fs::rename(&temp, &target).map_err(backend)?;
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(backend)
        })
        .await?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Objects in memory, for tests.
#[derive(Default)]
pub struct MemObjectStore {
    objects: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
}

impl MemObjectStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ObjectStore for MemObjectStore {
    async fn create(&self, id: &str) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        Ok(Box::new(MemWriter { id: id.to_owned(), buffer: Vec::new(), objects: Arc::clone(&self.objects) }))
    }

    async fn read_at(&self, id: &str, offset: u64, len: usize) -> Result<Vec<u8>, ObjectError> {
        let objects = self.objects.lock().map_err(backend)?;
        let object = objects.get(id).ok_or_else(|| ObjectError::NotFound(id.to_owned()))?;
        let start = (offset as usize).min(object.len());
        Ok(object[start..(start + len).min(object.len())].to_vec())
    }

    async fn delete(&self, id: &str) -> Result<(), ObjectError> {
        self.objects.lock().map_err(backend)?.remove(id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(String, std::time::Duration)>, ObjectError> {
        Ok(self.objects.lock().map_err(backend)?.keys().map(|k| (k.clone(), std::time::Duration::MAX)).collect())
    }
}

struct MemWriter {
    id: String,
    buffer: Vec<u8>,
    objects: Arc<Mutex<HashMap<String, Arc<Vec<u8>>>>>,
}

#[async_trait]
impl ObjectWriter for MemWriter {
    async fn write(&mut self, bytes: Vec<u8>) -> Result<(), ObjectError> {
        self.buffer.extend_from_slice(&bytes);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), ObjectError> {
        let MemWriter { id, buffer, objects } = *self;
        objects.lock().map_err(backend)?.insert(id, Arc::new(buffer));
        Ok(())
    }
}

/// The suite every [`ObjectStore`] adapter must pass.
pub async fn conformance(store: &dyn ObjectStore) {
    let mut writer = match store.create("ab-object-1").await {
        Ok(w) => w,
        Err(e) => panic!("create failed: {e}"),
    };
    assert!(matches!(writer.write(b"hello ".to_vec()).await, Ok(())));
    assert!(
        matches!(store.read_at("ab-object-1", 0, 5).await, Err(ObjectError::NotFound(_))),
        "unfinished objects are invisible"
    );
    assert!(matches!(writer.write(b"world".to_vec()).await, Ok(())));
    assert!(writer.finish().await.is_ok());
    assert!(
        store.list().await.is_ok_and(|l| l.iter().any(|(id, _)| id == "ab-object-1")),
        "finished objects are listed"
    );
    assert_eq!(
        store.read_at("ab-object-1", 6, 100).await.ok().as_deref(),
        Some(&b"world"[..]),
        "short read at the end"
    );
    assert!(store.delete("ab-object-1").await.is_ok());
    assert!(matches!(store.read_at("ab-object-1", 0, 1).await, Err(ObjectError::NotFound(_))));
    let abandoned = store.create("ab-object-2").await;
    drop(abandoned);
    assert!(
        matches!(store.read_at("ab-object-2", 0, 1).await, Err(ObjectError::NotFound(_))),
        "dropped writers leave nothing"
    );
}
