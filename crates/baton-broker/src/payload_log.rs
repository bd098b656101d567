//! Message payloads in append-only segment files, beside the disk store's
//! database.
//!
//! Payloads are nearly all of a message's bytes, written once and read at
//! most a few times. In the database every payload cost a B-tree insert and
//! later a delete, copy-on-write pages and all (about 20 µs per 1 KB
//! message, most of the writer's time); appended to a file they cost a
//! sequential write. The database keeps where each payload is (segment,
//! offset, length) next to the rest of the message, so nothing needs
//! scanning when the store opens.
//!
//! Segments are numbered; the writer appends to the newest and starts a new
//! one when it is full, and also on every opening (the tail of the last
//! one may hold payloads of a batch that was never committed). A segment
//! file goes once no stored message has its payload there. Before the
//! database commits a batch, the segment is synced, so the database never
//! refers to bytes that are not on disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// A failed file operation of the payload log.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub(crate) struct PayloadLogError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// Name of the directory of segment files inside the data directory.
pub const PAYLOAD_DIR: &str = "payloads";
/// A segment takes appends until it holds this many bytes.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Open segment files kept for reads.
const OPEN_READERS: usize = 64;

/// Where a payload is. Segment 0 is no segment: an empty payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u64,
}

impl Location {
    /// The location of an empty payload (nothing written).
    pub const EMPTY: Location = Location {
        segment: 0,
        offset: 0,
        len: 0,
    };
}

fn io_error(action: &'static str, path: &Path, error: std::io::Error) -> PayloadLogError {
    PayloadLogError {
        action,
        path: path.to_path_buf(),
        source: error,
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016x}.seg"))
}

/// The segment files in `dir`, by number.
fn list_segments(dir: &Path) -> Result<Vec<u64>, PayloadLogError> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(segment) = u64::from_str_radix(stem, 16) {
            segments.push(segment);
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Syncs the directory, so a file created or removed in it stays so.
fn sync_dir(dir: &Path) -> Result<(), PayloadLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing", dir, e))
}

/// The writer's side: appends, syncs, and removes segments no payload
/// lives in any more.
#[derive(Debug)]
pub(crate) struct PayloadWriter {
    dir: PathBuf,
    segment: u64,
    file: BufWriter<File>,
    len: u64,
    /// A segment was started since the last sync (the directory must be
    /// synced too).
    started: bool,
    /// Payloads were appended since the last sync.
    dirty: bool,
    /// Stored payloads per segment; a segment with none left goes.
    live: HashMap<u64, u64>,
    /// Segments that hold no stored payload and take no appends: removed
    /// once the deletions that emptied them are committed.
    empty: Vec<u64>,
    /// Segments found at opening whose payloads are not counted yet.
    uncounted: Vec<u64>,
}

impl PayloadWriter {
    /// Opens the log in `dir` (created if missing). Appends go to a new
    /// segment, numbered after every segment there and after `referenced`
    /// (the highest segment the database refers to, so a number is never
    /// reused even if that segment's file went missing). The segments
    /// already there are kept until [`Self::adopt_counts`] says how many
    /// stored payloads each holds: counting them reads every stored
    /// message, which the store does in the background once the server is
    /// serving.
    pub fn open(dir: &Path, referenced: u64) -> Result<Self, PayloadLogError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
        let earlier = list_segments(dir)?;
        let next = earlier.iter().copied().fold(referenced, u64::max) + 1;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment: next,
            file: Self::create(dir, next)?,
            len: 0,
            started: true,
            dirty: false,
            live: HashMap::new(),
            empty: Vec::new(),
            uncounted: earlier,
        })
    }

    /// Takes the counts of stored payloads in the segments that were there
    /// when the log was opened, as the database said when it was opened
    /// (none of their payloads is deleted before this). Segments holding
    /// none (fully settled, or written by a batch that never committed) go
    /// with the next [`Self::remove_empty`].
    pub fn adopt_counts(&mut self, live: &HashMap<u64, u64>) {
        let missing = live
            .keys()
            .filter(|segment| **segment != self.segment && !self.uncounted.contains(segment))
            .count();
        if missing > 0 {
            tracing::warn!(
                missing,
                dir = %self.dir.display(),
                "stored messages refer to payload segments that are not there; their payloads read back empty"
            );
        }
        for segment in std::mem::take(&mut self.uncounted) {
            match live.get(&segment).copied().unwrap_or(0) {
                0 => self.empty.push(segment),
                count => {
                    self.live.insert(segment, count);
                }
            }
        }
    }

    fn create(dir: &Path, segment: u64) -> Result<BufWriter<File>, PayloadLogError> {
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("creating", &path, e))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    /// Appends a payload; where it is. Not durable until [`Self::sync`].
    pub fn append(&mut self, data: &[u8]) -> Result<Location, PayloadLogError> {
        if data.is_empty() {
            return Ok(Location::EMPTY);
        }
        if self.len > 0 && self.len + data.len() as u64 > SEGMENT_BYTES {
            self.rotate()?;
        }
        let location = Location {
            segment: self.segment,
            offset: self.len,
            len: data.len() as u64,
        };
        self.file.write_all(data).map_err(|e| {
            let path = segment_path(&self.dir, self.segment);
            io_error("writing", &path, e)
        })?;
        self.len += data.len() as u64;
        self.dirty = true;
        *self.live.entry(self.segment).or_default() += 1;
        Ok(location)
    }

    /// Closes the full segment (synced) and starts the next.
    fn rotate(&mut self) -> Result<(), PayloadLogError> {
        self.sync()?;
        let next = self.segment + 1;
        self.file = Self::create(&self.dir, next)?;
        if !self.live.contains_key(&self.segment) {
            self.empty.push(self.segment);
        }
        self.segment = next;
        self.len = 0;
        self.started = true;
        Ok(())
    }

    /// Whether [`Self::sync`] has anything to do.
    pub fn needs_sync(&self) -> bool {
        self.dirty || self.started
    }

    /// Makes every payload appended so far durable.
    pub fn sync(&mut self) -> Result<(), PayloadLogError> {
        if !std::mem::take(&mut self.dirty) && !self.started {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.segment);
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_data())
            .map_err(|e| io_error("syncing", &path, e))?;
        if std::mem::take(&mut self.started) {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// A stored payload was deleted (not yet committed).
    pub fn release(&mut self, location: Location) {
        if location.segment == 0 {
            return;
        }
        let Some(count) = self.live.get_mut(&location.segment) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.live.remove(&location.segment);
            if location.segment != self.segment {
                self.empty.push(location.segment);
            }
        }
    }

    /// Removes the segments that no stored message refers to any more; call
    /// it once the deletions are committed. The segments removed.
    pub fn remove_empty(&mut self) -> Result<Vec<u64>, PayloadLogError> {
        let empty = std::mem::take(&mut self.empty);
        for segment in &empty {
            let path = segment_path(&self.dir, *segment);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &path, e)),
            }
        }
        Ok(empty)
    }
}

/// The readers' side: reads payloads at their locations, keeping a few
/// segment files open.
#[derive(Debug)]
pub(crate) struct PayloadReader {
    dir: PathBuf,
    open: Mutex<HashMap<u64, Arc<File>>>,
}

impl PayloadReader {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, segment: u64) -> Result<Option<Arc<File>>, PayloadLogError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = open.get(&segment) {
            return Ok(Some(file.clone()));
        }
        let path = segment_path(&self.dir, segment);
        let file = match File::open(&path) {
            Ok(file) => Arc::new(file),
            // Removed: every message in it was settled meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        if open.len() >= OPEN_READERS {
            open.clear();
        }
        open.insert(segment, file.clone());
        Ok(Some(file))
    }

    /// The payload at `location`, or `None` if its segment is gone.
    pub fn read(&self, location: Location) -> Result<Option<Vec<u8>>, PayloadLogError> {
        if location.segment == 0 {
            return Ok(Some(Vec::new()));
        }
        let Some(file) = self.file(location.segment)? else {
            return Ok(None);
        };
        let len = usize::try_from(location.len).map_err(|_| {
            io_error(
                "reading",
                &segment_path(&self.dir, location.segment),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("payload length {}", location.len),
                ),
            )
        })?;
        let mut data = vec![0; len];
        match file.read_exact_at(&mut data, location.offset) {
            Ok(()) => Ok(Some(data)),
            Err(e) => Err(io_error(
                "reading",
                &segment_path(&self.dir, location.segment),
                e,
            )),
        }
    }

    /// Forgets an open segment (it was removed).
    pub fn forget(&self, segment: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&segment);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn payloads_read_back_and_empty_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = PayloadWriter::open(dir.path(), 0).unwrap();
        let a = writer.append(b"first").unwrap();
        let b = writer.append(&vec![9; 3000]).unwrap();
        assert_eq!(writer.append(b"").unwrap(), Location::EMPTY);
        writer.sync().unwrap();
        let reader = PayloadReader::new(dir.path());
        assert_eq!(reader.read(a).unwrap().unwrap(), b"first");
        assert_eq!(reader.read(b).unwrap().unwrap(), vec![9; 3000]);
        assert_eq!(reader.read(Location::EMPTY).unwrap().unwrap(), b"");
        // The current segment stays while it takes appends.
        writer.release(a);
        writer.release(b);
        assert!(writer.remove_empty().unwrap().is_empty());
        drop(writer);
        // Reopened with `a` still stored: its segment stays, a new one
        // takes appends; with nothing stored, both go.
        let mut writer = PayloadWriter::open(dir.path(), 0).unwrap();
        writer.adopt_counts(&HashMap::from([(a.segment, 1)]));
        assert!(writer.remove_empty().unwrap().is_empty());
        assert_eq!(list_segments(dir.path()).unwrap().len(), 2);
        assert_eq!(reader.read(a).unwrap().unwrap(), b"first");
        let c = writer.append(b"third").unwrap();
        assert!(c.segment > a.segment);
        writer.release(a);
        assert_eq!(writer.remove_empty().unwrap(), vec![a.segment]);
        reader.forget(a.segment);
        assert_eq!(reader.read(a).unwrap(), None);
        drop(writer);
        // Segments are kept until their counts are known.
        let mut writer = PayloadWriter::open(dir.path(), 0).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 2);
        writer.adopt_counts(&HashMap::new());
        assert_eq!(writer.remove_empty().unwrap(), vec![c.segment]);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![writer.segment]);
    }

    #[test]
    fn a_segment_number_the_database_refers_to_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let writer = PayloadWriter::open(dir.path(), 0).unwrap();
        assert_eq!(writer.segment, 1);
        drop(writer);
        // Segment 9 is referenced but its file is gone: appends go to 10.
        let writer = PayloadWriter::open(dir.path(), 9).unwrap();
        assert_eq!(writer.segment, 10);
    }

    #[test]
    fn a_full_segment_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = PayloadWriter::open(dir.path(), 0).unwrap();
        let big = vec![1; usize::try_from(SEGMENT_BYTES / 2 + 1).unwrap()];
        let first = writer.append(&big).unwrap();
        let second = writer.append(&big).unwrap();
        assert_eq!(second.segment, first.segment + 1);
        assert_eq!(second.offset, 0);
        writer.sync().unwrap();
        writer.release(first);
        assert_eq!(writer.remove_empty().unwrap(), vec![first.segment]);
        let reader = PayloadReader::new(dir.path());
        assert_eq!(reader.read(second).unwrap().unwrap().len(), big.len());
    }
}
