//! A streaming ZIP writer (PKWARE APPNOTE 6.3, the subset every unzip reads): deflated entries
//! whose CRC and sizes follow their data in a data descriptor (general purpose bit 3), so an
//! entry is written as it is produced and nothing is ever seeked back to.
//!
//! Why not the `zip` crate: its writer wants `Write + Seek` (or a stream wrapper around the same
//! synchronous `Write`), its 6.x release pulls `indexmap` and `memchr` even without default
//! features, and it keeps every entry's record in memory for the central directory. This writer
//! is a few hundred lines over `flate2` and `crc32fast`, which the lockfile already held
//! (through `tower-http`'s gzip), hands its output to the caller in chunks (the HTTP body), and
//! keeps what must wait for the end (the central directory, and entries the caller builds while
//! streaming others: [`DeflatedSpool`]) in unlinked temporary files, so the process holds the
//! same few buffers whether the archive has ten entries or sixty thousand.
//!
//! No ZIP64: an archive stays below 65,535 entries and 4 GiB, which a backup set's export does
//! (the export refuses a larger set up front; see [`MAX_ENTRIES`]). Crossing either limit is an
//! error, never a corrupt archive.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

use flate2::write::DeflateEncoder;
use flate2::Compression;
use time::OffsetDateTime;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
/// 2.0: deflate and data descriptors.
const VERSION_NEEDED: u16 = 20;
/// Unix (3) in the high byte, so readers take the external attributes as a Unix mode.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
/// Bit 3: CRC and sizes follow the data; bit 11: the name is UTF-8.
const FLAGS: u16 = 0x0008 | 0x0800;
const METHOD_DEFLATE: u16 = 8;
/// A regular file, `rw-r--r--`, in the high half.
const EXTERNAL_ATTRIBUTES: u32 = 0o100_644 << 16;
/// The most entries an archive without ZIP64 can list.
pub const MAX_ENTRIES: u64 = 0xFFFF;
/// The largest offset or size an archive without ZIP64 can record.
const MAX_U32: u64 = 0xFFFF_FFFF;
/// How much of a temporary file is buffered or copied out at a time.
const COPY_CHUNK: usize = 64 * 1024;

/// An MS-DOS date and time, as ZIP headers record when an entry was last modified (UTC here:
/// the format has no time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosTime {
    time: u16,
    date: u16,
}

impl DosTime {
    /// The earliest a DOS date holds: 1980-01-01 00:00.
    const EARLIEST: DosTime = DosTime {
        time: 0,
        date: (1 << 5) | 1,
    };
    /// The latest a DOS date holds: 2107-12-31 23:59:58.
    const LATEST: DosTime = DosTime {
        time: (23 << 11) | (59 << 5) | 29,
        date: (127 << 9) | (12 << 5) | 31,
    };

    /// The instant `millis` after the epoch, clamped to what DOS dates hold (1980–2107).
    pub fn from_millis(millis: i64) -> Self {
        let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        else {
            return if millis > 0 {
                Self::LATEST
            } else {
                Self::EARLIEST
            };
        };
        match at.year() {
            ..1980 => Self::EARLIEST,
            2108.. => Self::LATEST,
            year => Self {
                time: (u16::from(at.hour()) << 11)
                    | (u16::from(at.minute()) << 5)
                    | u16::from(at.second() / 2),
                date: (((year - 1980) as u16) << 9)
                    | (u16::from(u8::from(at.month())) << 5)
                    | u16::from(at.day()),
            },
        }
    }
}

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the archive would exceed what a ZIP without ZIP64 holds ({0})")]
    TooLarge(&'static str),
    #[error("entries must be started, written and ended in turn")]
    Misuse,
}

/// What an entry's data descriptor and central directory record say about it.
struct EntryInfo {
    name: Vec<u8>,
    modified: DosTime,
    header_offset: u64,
}

/// The entry being written: streamed through the encoder, or copied from a spool.
enum Open {
    Streamed {
        info: EntryInfo,
        crc: crc32fast::Hasher,
        size: u64,
        compressed: u64,
        encoder: DeflateEncoder<Vec<u8>>,
    },
    Copied {
        info: EntryInfo,
        spool: FinishedSpool,
    },
    CentralDirectory,
}

/// Writes an archive into an output buffer that the caller drains with [`ZipWriter::take`]
/// whenever [`ZipWriter::pending`] has grown large enough.
///
/// An entry is either streamed ([`ZipWriter::start`], [`ZipWriter::write`]…,
/// [`ZipWriter::end`]) or copied from a [`DeflatedSpool`] ([`ZipWriter::add_spooled`], then
/// [`ZipWriter::copy_chunk`] until it answers `false`). The archive ends with
/// [`ZipWriter::finish_entries`], [`ZipWriter::copy_chunk`] until `false`, and
/// [`ZipWriter::close`].
pub struct ZipWriter {
    out: Vec<u8>,
    /// Bytes produced so far, taken or not: the next header's offset.
    offset: u64,
    entries: u64,
    open: Option<Open>,
    central: BufWriter<File>,
    /// Where the central directory starts, once the entries are done.
    central_offset: Option<u64>,
    closed: bool,
}

impl ZipWriter {
    /// An empty archive whose central directory waits in a temporary file.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            out: Vec::new(),
            offset: 0,
            entries: 0,
            open: None,
            central: BufWriter::with_capacity(COPY_CHUNK, unlinked_temp_file()?),
            central_offset: None,
            closed: false,
        })
    }

    /// Bytes ready for the client.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes ready for the client.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Starts a streamed entry called `name` (a relative path with `/` separators, which the
    /// caller has made safe and unique), modified at `modified`.
    pub fn start(&mut self, name: &str, modified: DosTime) -> Result<(), ZipError> {
        let info = self.local_header(name, modified)?;
        self.open = Some(Open::Streamed {
            info,
            crc: crc32fast::Hasher::new(),
            size: 0,
            compressed: 0,
            encoder: DeflateEncoder::new(Vec::new(), Compression::default()),
        });
        Ok(())
    }

    /// Appends to the streamed entry.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ZipError> {
        let Some(Open::Streamed {
            crc,
            size,
            compressed,
            encoder,
            ..
        }) = self.open.as_mut()
        else {
            return Err(ZipError::Misuse);
        };
        crc.update(data);
        *size += data.len() as u64;
        encoder.write_all(data)?;
        let bytes = std::mem::take(encoder.get_mut());
        *compressed += bytes.len() as u64;
        self.emit(&bytes);
        Ok(())
    }

    /// Ends the streamed entry: the rest of its compressed data, then its data descriptor.
    pub fn end(&mut self) -> Result<(), ZipError> {
        let Some(Open::Streamed {
            info,
            crc,
            size,
            compressed,
            encoder,
        }) = self.open.take()
        else {
            return Err(ZipError::Misuse);
        };
        let tail = encoder.finish()?;
        self.emit(&tail);
        self.end_entry(info, crc.finalize(), size, compressed + tail.len() as u64)
    }

    /// Starts an entry whose data `spool` holds already compressed; [`ZipWriter::copy_chunk`]
    /// copies it out.
    pub fn add_spooled(
        &mut self,
        name: &str,
        modified: DosTime,
        spool: DeflatedSpool,
    ) -> Result<(), ZipError> {
        let spool = spool.finish()?;
        let info = self.local_header(name, modified)?;
        self.open = Some(Open::Copied { info, spool });
        Ok(())
    }

    /// Ends the entries and starts the central directory; [`ZipWriter::copy_chunk`] copies it
    /// out, then [`ZipWriter::close`] ends the archive.
    pub fn finish_entries(&mut self) -> Result<(), ZipError> {
        if self.open.is_some() || self.central_offset.is_some() {
            return Err(ZipError::Misuse);
        }
        if self.offset > MAX_U32 {
            return Err(ZipError::TooLarge("4 GiB"));
        }
        self.central_offset = Some(self.offset);
        self.central.flush()?;
        self.central.get_mut().seek(SeekFrom::Start(0))?;
        self.open = Some(Open::CentralDirectory);
        Ok(())
    }

    /// Copies the next part of a spooled entry or of the central directory to the output;
    /// `false` once all of it is (a spooled entry is then ended).
    pub fn copy_chunk(&mut self) -> Result<bool, ZipError> {
        let mut chunk = vec![0; COPY_CHUNK];
        let read = match self.open.as_mut() {
            Some(Open::Copied { spool, .. }) => spool.file.read(&mut chunk)?,
            Some(Open::CentralDirectory) => self.central.get_mut().read(&mut chunk)?,
            _ => return Err(ZipError::Misuse),
        };
        if read > 0 {
            self.emit(&chunk[..read]);
            return Ok(true);
        }
        if matches!(self.open, Some(Open::Copied { .. })) {
            if let Some(Open::Copied { info, spool }) = self.open.take() {
                self.end_entry(info, spool.crc, spool.size, spool.compressed)?;
            }
        }
        Ok(false)
    }

    /// Writes the end of central directory record: the archive is complete.
    pub fn close(&mut self) -> Result<(), ZipError> {
        let (Some(start), Some(Open::CentralDirectory), false) =
            (self.central_offset, self.open.as_ref(), self.closed)
        else {
            return Err(ZipError::Misuse);
        };
        let size = self.offset - start;
        if size > MAX_U32 {
            return Err(ZipError::TooLarge("4 GiB"));
        }
        // `local_header` refused the 65,536th entry.
        let entries = self.entries as u16;
        let mut end = Vec::with_capacity(22);
        put32(&mut end, END_OF_CENTRAL_DIRECTORY);
        // This disk, the disk where the central directory starts.
        put16(&mut end, 0);
        put16(&mut end, 0);
        put16(&mut end, entries);
        put16(&mut end, entries);
        put32(&mut end, size as u32);
        put32(&mut end, start as u32);
        // No comment.
        put16(&mut end, 0);
        self.emit(&end);
        self.closed = true;
        Ok(())
    }

    /// Writes an entry's local header (CRC and sizes follow its data).
    fn local_header(&mut self, name: &str, modified: DosTime) -> Result<EntryInfo, ZipError> {
        if self.open.is_some() || self.central_offset.is_some() {
            return Err(ZipError::Misuse);
        }
        if self.entries >= MAX_ENTRIES {
            return Err(ZipError::TooLarge("65,535 entries"));
        }
        if self.offset > MAX_U32 {
            return Err(ZipError::TooLarge("4 GiB"));
        }
        let name = name.as_bytes().to_vec();
        let name_len = u16::try_from(name.len()).map_err(|_| ZipError::TooLarge("a name"))?;
        let mut header = Vec::with_capacity(30 + name.len());
        put32(&mut header, LOCAL_HEADER);
        put16(&mut header, VERSION_NEEDED);
        put16(&mut header, FLAGS);
        put16(&mut header, METHOD_DEFLATE);
        put16(&mut header, modified.time);
        put16(&mut header, modified.date);
        // CRC, compressed and uncompressed size: in the data descriptor.
        put32(&mut header, 0);
        put32(&mut header, 0);
        put32(&mut header, 0);
        put16(&mut header, name_len);
        // No extra field.
        put16(&mut header, 0);
        header.extend_from_slice(&name);
        let info = EntryInfo {
            name,
            modified,
            header_offset: self.offset,
        };
        self.emit(&header);
        Ok(info)
    }

    /// Writes the data descriptor and spools the central directory record.
    fn end_entry(
        &mut self,
        info: EntryInfo,
        crc: u32,
        size: u64,
        compressed: u64,
    ) -> Result<(), ZipError> {
        if compressed > MAX_U32 || size > MAX_U32 {
            return Err(ZipError::TooLarge("4 GiB in one entry"));
        }
        let mut descriptor = Vec::with_capacity(16);
        put32(&mut descriptor, DATA_DESCRIPTOR);
        put32(&mut descriptor, crc);
        put32(&mut descriptor, compressed as u32);
        put32(&mut descriptor, size as u32);
        self.emit(&descriptor);

        let mut record = Vec::with_capacity(46 + info.name.len());
        put32(&mut record, CENTRAL_HEADER);
        put16(&mut record, VERSION_MADE_BY);
        put16(&mut record, VERSION_NEEDED);
        put16(&mut record, FLAGS);
        put16(&mut record, METHOD_DEFLATE);
        put16(&mut record, info.modified.time);
        put16(&mut record, info.modified.date);
        put32(&mut record, crc);
        put32(&mut record, compressed as u32);
        put32(&mut record, size as u32);
        // `local_header` checked that the name's length fits.
        put16(&mut record, info.name.len() as u16);
        // Extra field, comment, disk number, internal attributes.
        put16(&mut record, 0);
        put16(&mut record, 0);
        put16(&mut record, 0);
        put16(&mut record, 0);
        put32(&mut record, EXTERNAL_ATTRIBUTES);
        // `local_header` checked that the offset fits.
        put32(&mut record, info.header_offset as u32);
        record.extend_from_slice(&info.name);
        self.central.write_all(&record)?;
        self.entries += 1;
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.offset += bytes.len() as u64;
    }
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// An entry built while others are streamed (the manifest and the README list every policy,
/// but are written after them): its text is deflated into a temporary file as it comes, and
/// [`ZipWriter::add_spooled`] copies the compressed bytes into the archive at the end.
pub struct DeflatedSpool {
    crc: crc32fast::Hasher,
    size: u64,
    encoder: DeflateEncoder<BufWriter<File>>,
}

impl DeflatedSpool {
    /// An empty entry in a new temporary file.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            crc: crc32fast::Hasher::new(),
            size: 0,
            encoder: DeflateEncoder::new(
                BufWriter::with_capacity(COPY_CHUNK, unlinked_temp_file()?),
                Compression::default(),
            ),
        })
    }

    /// Appends to the entry.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.crc.update(data);
        self.size += data.len() as u64;
        self.encoder.write_all(data)
    }

    /// The compressed data, rewound for copying, with its CRC and sizes.
    fn finish(self) -> io::Result<FinishedSpool> {
        let mut file = self
            .encoder
            .finish()?
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let compressed = file.stream_position()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(FinishedSpool {
            file,
            crc: self.crc.finalize(),
            size: self.size,
            compressed,
        })
    }
}

/// A [`DeflatedSpool`] ready to be copied.
struct FinishedSpool {
    file: File,
    crc: u32,
    size: u64,
    compressed: u64,
}

/// A temporary file that is unlinked as soon as it is created: it disappears with its handle,
/// even when the process is killed. Writes to it are buffered, so a 64 KiB write reaches the
/// file now and then; on a tmpfs its bytes are RAM, but not the server's. It is created
/// readable by the server's user alone: between its creation and its unlinking, another user
/// of a shared temporary folder could otherwise open it and read the tenant's export.
fn unlinked_temp_file() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    for _ in 0..8 {
        let path = dir.join(format!("tenantatlas-zip-{:016x}", rand::random::<u64>()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => {
                std::fs::remove_file(&path)?;
                return Ok(file);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;

    #[test]
    fn temporary_files_are_the_server_users_alone() {
        use std::os::unix::fs::PermissionsExt;
        let mode = unlinked_temp_file()
            .unwrap()
            .metadata()
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    /// How a test adds an entry.
    enum How {
        Streamed,
        Spooled,
    }

    /// Writes `files`, taking the output after every step as the HTTP body does.
    fn archive(files: &[(&str, &[u8], How)]) -> Vec<u8> {
        let mut zip = ZipWriter::new().unwrap();
        let mut out = Vec::new();
        let modified = DosTime::from_millis(1_764_750_902_123);
        for (name, data, how) in files {
            match how {
                How::Streamed => {
                    zip.start(name, modified).unwrap();
                    for piece in data.chunks(1000) {
                        zip.write(piece).unwrap();
                        out.extend(zip.take());
                    }
                    zip.end().unwrap();
                }
                How::Spooled => {
                    let mut spool = DeflatedSpool::new().unwrap();
                    for piece in data.chunks(1000) {
                        spool.write(piece).unwrap();
                    }
                    zip.add_spooled(name, modified, spool).unwrap();
                    while zip.copy_chunk().unwrap() {
                        out.extend(zip.take());
                    }
                }
            }
        }
        zip.finish_entries().unwrap();
        while zip.copy_chunk().unwrap() {
            out.extend(zip.take());
        }
        zip.close().unwrap();
        out.extend(zip.take());
        out
    }

    /// Reads an archive the way unzip does: from the end record through the central directory
    /// to each local header, inflating and checking each entry's CRC and sizes.
    fn read_back(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let end = bytes.len() - 22;
        assert_eq!(u32_at(bytes, end), END_OF_CENTRAL_DIRECTORY);
        let count = u16_at(bytes, end + 10) as usize;
        let size = u32_at(bytes, end + 12) as usize;
        let mut at = u32_at(bytes, end + 16) as usize;
        assert_eq!(
            at + size,
            end,
            "the central directory ends where the end record starts"
        );
        let mut files = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(bytes, at), CENTRAL_HEADER);
            let crc = u32_at(bytes, at + 16);
            let compressed = u32_at(bytes, at + 20) as usize;
            let size = u32_at(bytes, at + 24) as usize;
            let name_len = u16_at(bytes, at + 28) as usize;
            let local = u32_at(bytes, at + 42) as usize;
            let name = String::from_utf8(bytes[at + 46..at + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(bytes, local), LOCAL_HEADER);
            assert_eq!(u16_at(bytes, local + 6), FLAGS);
            let local_name_len = u16_at(bytes, local + 26) as usize;
            assert_eq!(
                &bytes[local + 30..local + 30 + local_name_len],
                name.as_bytes()
            );
            let data = local + 30 + local_name_len;
            let mut inflated = Vec::new();
            DeflateDecoder::new(&bytes[data..data + compressed])
                .read_to_end(&mut inflated)
                .unwrap();
            assert_eq!(inflated.len(), size);
            assert_eq!(crc32fast::hash(&inflated), crc);
            let descriptor = data + compressed;
            assert_eq!(u32_at(bytes, descriptor), DATA_DESCRIPTOR);
            assert_eq!(u32_at(bytes, descriptor + 4), crc);
            assert_eq!(u32_at(bytes, descriptor + 8) as usize, compressed);
            assert_eq!(u32_at(bytes, descriptor + 12) as usize, size);
            files.push((name, inflated));
            at += 46 + name_len;
        }
        files
    }

    #[test]
    fn streamed_and_spooled_entries_read_back_with_their_names_and_bytes() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 7).to_le_bytes())
            .collect();
        let files = [
            (
                "policies/compliance/Gr\u{fc}n__1.json",
                big.as_slice(),
                How::Streamed,
            ),
            ("empty.txt", b"".as_slice(), How::Streamed),
            (
                "manifest.json",
                b"{\"items\": []}\n".as_slice(),
                How::Spooled,
            ),
            ("README.md", big.as_slice(), How::Spooled),
            ("empty spool", b"".as_slice(), How::Spooled),
        ];
        let bytes = archive(&files);
        let back = read_back(&bytes);
        assert_eq!(back.len(), files.len());
        for ((name, data, _), (read_name, read_data)) in files.iter().zip(&back) {
            assert_eq!(name, read_name);
            assert_eq!(*data, read_data.as_slice());
        }
    }

    #[test]
    fn an_empty_archive_is_just_the_end_record() {
        let bytes = archive(&[]);
        assert_eq!(bytes.len(), 22);
        assert!(read_back(&bytes).is_empty());
    }

    #[test]
    fn steps_out_of_turn_are_refused() {
        let at = DosTime::from_millis(0);
        let mut zip = ZipWriter::new().unwrap();
        assert!(matches!(zip.write(b"x"), Err(ZipError::Misuse)));
        assert!(matches!(zip.end(), Err(ZipError::Misuse)));
        assert!(matches!(zip.copy_chunk(), Err(ZipError::Misuse)));
        assert!(matches!(zip.close(), Err(ZipError::Misuse)));
        zip.start("a", at).unwrap();
        assert!(matches!(zip.start("b", at), Err(ZipError::Misuse)));
        let spool = DeflatedSpool::new().unwrap();
        assert!(matches!(
            zip.add_spooled("c", at, spool),
            Err(ZipError::Misuse)
        ));
        assert!(matches!(zip.finish_entries(), Err(ZipError::Misuse)));
        zip.end().unwrap();
        zip.finish_entries().unwrap();
        assert!(matches!(zip.start("d", at), Err(ZipError::Misuse)));
        while zip.copy_chunk().unwrap() {}
        zip.close().unwrap();
        assert!(matches!(zip.close(), Err(ZipError::Misuse)));
    }

    /// The file is gone from its folder while the archive still uses it.
    #[cfg(target_os = "linux")]
    #[test]
    fn temporary_files_are_unlinked_at_once() {
        use std::os::fd::AsRawFd;
        let mut file = unlinked_temp_file().unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().ends_with(" (deleted)"), "{link:?}");
        file.write_all(b"still usable").unwrap();
    }

    #[test]
    fn dos_times_are_utc_and_clamped() {
        // 2025-12-03T08:35:02Z
        let t = DosTime::from_millis(1_764_750_902_123);
        assert_eq!(t.date, (45 << 9) | (12 << 5) | 3);
        assert_eq!(t.time, (8 << 11) | (35 << 5) | 1);
        assert_eq!(DosTime::from_millis(0), DosTime::EARLIEST);
        assert_eq!(DosTime::from_millis(-1), DosTime::EARLIEST);
        assert_eq!(DosTime::from_millis(i64::MAX), DosTime::LATEST);
        // 2200-01-01
        assert_eq!(DosTime::from_millis(7_258_118_400_000), DosTime::LATEST);
    }
}
