//! Writing a snapshot's manifest list with each entry encoded once per process.
//!
//! A manifest's entry in a manifest list never changes once its sequence numbers are assigned, and
//! every commit carries the entries of its parent's list forward: with manifest merging's default
//! of 100, a table committed to again and again writes up to 100 entries at every commit, all but
//! one of them the same as last time. iceberg-rust's `ManifestListWriter` encodes each entry afresh
//! (99 entries: 0.09 ms in the test build; 0.02 ms from this cache). floe lets iceberg-rust encode
//! each entry once, alone in a list written in memory with the commit's own header, keeps the
//! entry's bytes by manifest path (with the entry itself, compared before the bytes are reused), and
//! writes the list as that header and one Avro block of the entries' bytes: the same Avro object
//! container file iceberg-rust writes (uncompressed, as it writes them), which any reader decodes to
//! the same entries.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use iceberg::io::FileWrite;
use iceberg::spec::{ManifestFile, ManifestListWriter};

use super::cache::Bounded;
use crate::error::{Error, Result};

/// Entries kept in all (each some hundred bytes, with its `ManifestFile`).
const MAX_ENTRIES: usize = 50_000;

pub(crate) const AVRO_MAGIC: &[u8] = b"Obj\x01";
pub(crate) const MARKER_LEN: usize = 16;

/// Encoded manifest-list entries by manifest path.
#[derive(Debug)]
pub(crate) struct ManifestListEntryCache {
    by_path: Bounded<Arc<EncodedEntry>>,
}

impl Default for ManifestListEntryCache {
    fn default() -> Self {
        Self {
            by_path: Bounded::new(MAX_ENTRIES),
        }
    }
}

/// One manifest's entry and its Avro encoding (v2, the datum alone).
#[derive(Debug)]
struct EncodedEntry {
    manifest: ManifestFile,
    bytes: Bytes,
}

impl ManifestListEntryCache {
    /// The encoding of `manifest`'s entry, when this exact entry was encoded before.
    fn get(&self, manifest: &ManifestFile) -> Option<Bytes> {
        self.by_path
            .get(&manifest.manifest_path)
            .filter(|e| e.manifest == *manifest)
            .map(|e| e.bytes.clone())
    }

    /// Remember the encoding of `manifest`'s entry (the first one kept for a path wins; a different
    /// entry under that path is encoded again each time, which a manifest's path never gets).
    fn put(&self, manifest: &ManifestFile, bytes: Bytes) {
        let entry = Arc::new(EncodedEntry {
            manifest: manifest.clone(),
            bytes,
        });
        self.by_path.put(&manifest.manifest_path, entry);
    }
}

/// What a v2 manifest list of one commit is written with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListHeader {
    pub(crate) snapshot_id: i64,
    pub(crate) parent_snapshot_id: Option<i64>,
    pub(crate) sequence_number: i64,
}

/// The bytes of the v2 manifest list of `manifests` (in order; their sequence numbers assigned),
/// encoding only the entries `cache` does not hold yet.
pub(crate) async fn encode(
    header: ListHeader,
    manifests: &[ManifestFile],
    cache: &ManifestListEntryCache,
) -> Result<Vec<u8>> {
    let mut file_header: Option<Vec<u8>> = None;
    let mut entries: Vec<Bytes> = Vec::with_capacity(manifests.len());
    for m in manifests {
        if let Some(bytes) = cache.get(m) {
            entries.push(bytes);
            continue;
        }
        let file = write_with_iceberg(header, std::slice::from_ref(m)).await?;
        let parsed = parse_container(&file)?;
        if parsed.count != 1 {
            return Err(Error::internal(format!(
                "a manifest list of one entry holds {} entries",
                parsed.count
            )));
        }
        let bytes = Bytes::copy_from_slice(&file[parsed.data]);
        cache.put(m, bytes.clone());
        entries.push(bytes);
        file_header.get_or_insert_with(|| file[..parsed.header_len].to_vec());
    }
    let mut out = match file_header {
        Some(h) => h,
        None => {
            let file = write_with_iceberg(header, &[]).await?;
            let parsed = parse_container(&file)?;
            file[..parsed.header_len].to_vec()
        }
    };
    if entries.is_empty() {
        return Ok(out);
    }
    let marker: [u8; MARKER_LEN] = out[out.len() - MARKER_LEN..]
        .try_into()
        .expect("a header ends with its sync marker");
    let size: usize = entries.iter().map(|e| e.len()).sum();
    out.reserve(size + 2 * 10 + MARKER_LEN);
    write_long(&mut out, entries.len() as i64);
    write_long(&mut out, size as i64);
    for e in &entries {
        out.extend_from_slice(e);
    }
    out.extend_from_slice(&marker);
    Ok(out)
}

/// The manifest list iceberg-rust writes for `manifests`, in memory.
pub(crate) async fn write_with_iceberg(header: ListHeader, manifests: &[ManifestFile]) -> Result<Vec<u8>> {
    let buffer = SharedBuffer::default();
    let mut writer = ManifestListWriter::v2(
        Box::new(buffer.clone()),
        header.snapshot_id,
        header.parent_snapshot_id,
        header.sequence_number,
    );
    writer.add_manifests(manifests.iter().cloned())?;
    writer.close().await?;
    let bytes = std::mem::take(&mut *buffer.0.lock().expect("buffer poisoned"));
    Ok(bytes)
}

/// An in-memory `FileWrite` whose bytes stay readable after the writer that owns it is gone.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

#[async_trait::async_trait]
impl FileWrite for SharedBuffer {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        self.0.lock().expect("buffer poisoned").extend_from_slice(&bs);
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        Ok(())
    }
}

/// Where the parts of an Avro object container file of at most one block are.
#[derive(Debug)]
struct Container {
    /// The header's length, its sync marker included.
    header_len: usize,
    /// Records in the block (0 without one).
    count: i64,
    /// The block's record bytes.
    data: std::ops::Range<usize>,
}

/// Split an Avro object container file into its header and its one block of records (written
/// uncompressed, as iceberg-rust writes manifest lists), checking every length and marker.
fn parse_container(file: &[u8]) -> Result<Container> {
    let bad = |why: &str| Error::internal(format!("unexpected manifest list encoding: {why}"));
    if !file.starts_with(AVRO_MAGIC) {
        return Err(bad("no Avro magic"));
    }
    let mut pos = AVRO_MAGIC.len();
    let mut codec_null = true;
    loop {
        let mut count = read_long(file, &mut pos).ok_or_else(|| bad("truncated header"))?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = -count;
            read_long(file, &mut pos).ok_or_else(|| bad("truncated header"))?;
        }
        for _ in 0..count {
            let key = read_bytes(file, &mut pos).ok_or_else(|| bad("truncated header"))?;
            let value = read_bytes(file, &mut pos).ok_or_else(|| bad("truncated header"))?;
            if key == b"avro.codec" && value != b"null" {
                codec_null = false;
            }
        }
    }
    if !codec_null {
        return Err(bad("compressed blocks"));
    }
    let header_len = pos + MARKER_LEN;
    let marker = file.get(pos..header_len).ok_or_else(|| bad("no sync marker"))?;
    pos = header_len;
    if pos == file.len() {
        return Ok(Container {
            header_len,
            count: 0,
            data: pos..pos,
        });
    }
    let count = read_long(file, &mut pos).ok_or_else(|| bad("truncated block"))?;
    let size = read_long(file, &mut pos).ok_or_else(|| bad("truncated block"))?;
    let size = usize::try_from(size).map_err(|_| bad("negative block size"))?;
    let data = pos..pos + size;
    let end = data.end + MARKER_LEN;
    if file.len() != end {
        return Err(bad("more than one block, or a block of the wrong size"));
    }
    if &file[data.end..end] != marker {
        return Err(bad("a block that does not end with the file's sync marker"));
    }
    Ok(Container {
        header_len,
        count,
        data,
    })
}

/// Avro's zig-zag varint `long` at `pos`.
pub(crate) fn read_long(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some((value >> 1) as i64 ^ -((value & 1) as i64))
}

/// Avro `bytes` (or `string`) at `pos`.
pub(crate) fn read_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_long(buf, pos)?).ok()?;
    let bytes = buf.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(bytes)
}

/// Append Avro's zig-zag varint encoding of `v`.
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::{FieldSummary, FormatVersion, ManifestContentType, ManifestList};

    fn manifest(i: i64) -> ManifestFile {
        ManifestFile {
            manifest_path: format!("file:///t/metadata/m{i}.avro"),
            manifest_length: 4000 + i,
            partition_spec_id: 0,
            content: if i % 3 == 2 {
                ManifestContentType::Deletes
            } else {
                ManifestContentType::Data
            },
            sequence_number: i,
            min_sequence_number: i.max(1) - 1,
            added_snapshot_id: 1000 + i,
            added_files_count: Some(1),
            existing_files_count: Some(i as u32),
            deleted_files_count: Some(0),
            added_rows_count: Some(10 * i as u64),
            existing_rows_count: Some(0),
            deleted_rows_count: Some(0),
            partitions: Some(vec![FieldSummary {
                contains_null: i % 2 == 0,
                contains_nan: Some(false),
                lower_bound: Some(iceberg::spec::Datum::long(i).to_bytes().unwrap()),
                upper_bound: Some(iceberg::spec::Datum::long(i * 1000).to_bytes().unwrap()),
            }]),
            key_metadata: None,
            first_row_id: None,
        }
    }

    const HEADER: ListHeader = ListHeader {
        snapshot_id: 77,
        parent_snapshot_id: Some(76),
        sequence_number: 300,
    };

    #[test]
    fn longs_round_trip_through_zig_zag() {
        for v in [0, 1, -1, 63, -64, 64, 300, -300, i64::MAX, i64::MIN, 1 << 40] {
            let mut buf = Vec::new();
            write_long(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_long(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        assert_eq!(read_long(&[0x80], &mut 0), None, "a truncated varint is refused");
    }

    #[tokio::test]
    async fn a_list_of_cached_entries_decodes_to_what_iceberg_writes() {
        let cache = ManifestListEntryCache::default();
        let all: Vec<ManifestFile> = (1..=120).map(manifest).collect();
        // Cold: every entry encoded now; warm: all but the new first one served from the cache.
        let cold = encode(HEADER, &all[1..], &cache).await.unwrap();
        let warm = encode(HEADER, &all, &cache).await.unwrap();
        let reference = write_with_iceberg(HEADER, &all).await.unwrap();
        let decode = |bytes: &[u8]| {
            ManifestList::parse_with_version(bytes, FormatVersion::V2)
                .unwrap()
                .consume_entries()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(decode(&cold), all[1..].to_vec());
        assert_eq!(decode(&warm), all);
        assert_eq!(decode(&warm), decode(&reference));
        let ours = parse_container(&warm).unwrap();
        assert_eq!(ours.count, 120, "one block of every entry");
    }

    #[tokio::test]
    async fn a_changed_entry_under_a_cached_path_is_encoded_again() {
        let cache = ManifestListEntryCache::default();
        let mut m = manifest(5);
        encode(HEADER, std::slice::from_ref(&m), &cache).await.unwrap();
        m.existing_files_count = Some(99);
        let bytes = encode(HEADER, std::slice::from_ref(&m), &cache).await.unwrap();
        let decoded = ManifestList::parse_with_version(&bytes, FormatVersion::V2)
            .unwrap()
            .consume_entries()
            .into_iter()
            .collect::<Vec<_>>();
        assert_eq!(decoded, vec![m]);
    }

    #[tokio::test]
    async fn an_empty_list_is_a_header_alone() {
        let cache = ManifestListEntryCache::default();
        let bytes = encode(HEADER, &[], &cache).await.unwrap();
        let decoded = ManifestList::parse_with_version(&bytes, FormatVersion::V2).unwrap();
        assert!(decoded.entries().is_empty());
    }
}
