//! The spool's record file format and entry file names.
//!
//! An entry `<id:012>` is `<id:012>.jpg` (the frame), `<id:012>.rec` (its record) and, when it
//! has context frames (`[context]`), `<id:012>.ctx` (their JPEGs back to back, in the order the
//! record lists them). The record file is laid out as follows (integers little-endian):
//!
//! | offset | size | field                                                     |
//! |--------|------|-----------------------------------------------------------|
//! | 0      | 4    | magic `ESRC`                                              |
//! | 4      | 2    | format version ([`RECORD_FORMAT_VERSION`])                |
//! | 6      | 2    | reserved, 0                                               |
//! | 8      | 4    | payload length `n`                                        |
//! | 12     | 8    | length of the entry's JPEG                                |
//! | 20     | 4    | CRC-32 (IEEE) of the entry's JPEG                         |
//! | 24     | n    | postcard encoding of the [`KeptRecord`], then (version 2) |
//! |        |      | of the `Vec<`[`ContextFrame`]`>` (length and CRC each)   |
//! | 24 + n | 4    | CRC-32 (IEEE) of bytes `0 .. 24 + n`                      |
//!
//! Version 1 records (no context list) are still read. [`decode_record`] refuses anything else (another version, a torn write, a flipped bit) with a
//! reason, which the spool reports as corruption.

use super::spool::SpoolError;
use crate::store::record::{ContextFrame, KeptRecord};

/// Version written in every record header; records of a version above it or below
/// `OLDEST_READ_VERSION` (1) are treated as corrupt.
pub const RECORD_FORMAT_VERSION: u16 = 2;
/// Oldest version still read: version 1 has no context list.
pub const OLDEST_READ_VERSION: u16 = 1;

const MAGIC: [u8; 4] = *b"ESRC";
/// Length of the fixed header before the postcard payload.
pub(super) const HEADER_LEN: usize = 24;
const TRAILER_LEN: usize = 4;
/// Extension of an entry's JPEG.
pub(super) const JPG_EXT: &str = "jpg";
/// Extension of an entry's record.
pub(super) const REC_EXT: &str = "rec";
/// Extension of an entry's context frames.
pub(super) const CTX_EXT: &str = "ctx";

/// File name of entry `id`'s file with extension `ext`: `<id:012>.<ext>`.
pub(super) fn entry_file_name(id: u64, ext: &str) -> String {
    format!("{id:012}.{ext}")
}

/// The highest entry id: entry names are exactly 12 decimal digits, so ids end here and never
/// wrap around (the spool refuses new entries past it, [`super::spool::SpoolError::IdsExhausted`]).
pub const MAX_ID: u64 = 999_999_999_999;

/// `<12 digits>.jpg` / `.rec` → (id, extension). Any other name (more or fewer digits) is not
/// an entry.
pub(super) fn parse_entry_name(name: &str) -> Option<(u64, &'static str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ext = match ext {
        JPG_EXT => JPG_EXT,
        REC_EXT => REC_EXT,
        CTX_EXT => CTX_EXT,
        _ => return None,
    };
    if stem.len() != 12 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = stem.parse().ok()?;
    (id <= MAX_ID).then_some((id, ext))
}

/// A name that looks like an entry's (`<digits>.jpg` / `.rec`) but is not one: a stray file
/// that recovery moves to quarantine rather than using or deleting.
pub(super) fn is_stray_entry_name(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    [JPG_EXT, REC_EXT, CTX_EXT].contains(&ext)
        && !stem.is_empty()
        && stem.bytes().all(|b| b.is_ascii_digit())
        && parse_entry_name(name).is_none()
}

/// A record file's content: the record and what it says of its JPEG.
pub(super) struct DecodedRecord {
    pub(super) record: KeptRecord,
    pub(super) jpeg_len: u64,
    pub(super) jpeg_crc: u32,
    /// The context frames in the entry's `.ctx` file (none for a version 1 record).
    pub(super) context: Vec<ContextFrame>,
}

impl DecodedRecord {
    /// Bytes of the entry's context file.
    pub(super) fn context_len(&self) -> u64 {
        self.context.iter().map(|c| u64::from(c.jpeg_len)).sum()
    }
}

/// Encodes `record` for the entry whose JPEG is `jpeg` and whose context frames are `context`
/// into `buf` (cleared first, its allocation reused).
pub(super) fn encode_record(
    buf: &mut Vec<u8>,
    record: &KeptRecord,
    jpeg: &[u8],
    context: &[ContextFrame],
) -> Result<(), SpoolError> {
    let mut out = std::mem::take(buf);
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RECORD_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // payload length, patched below
    out.extend_from_slice(&(jpeg.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(jpeg).to_le_bytes());
    let out = postcard::to_extend(record, out).map_err(|e| SpoolError::Encode {
        message: format!("record: {e}"),
    })?;
    let mut out = postcard::to_extend(context, out).map_err(|e| SpoolError::Encode {
        message: format!("context list: {e}"),
    })?;
    let payload_len = u32::try_from(out.len() - HEADER_LEN).map_err(|_| SpoolError::Encode {
        message: "record larger than 4 GiB".into(),
    })?;
    out[8..12].copy_from_slice(&payload_len.to_le_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    *buf = out;
    Ok(())
}

/// Decodes a record file; `Err` says why it is corrupt.
pub(super) fn decode_record(bytes: &[u8]) -> Result<DecodedRecord, String> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(format!("{} bytes is shorter than a header", bytes.len()));
    }
    if bytes[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if !(OLDEST_READ_VERSION..=RECORD_FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version}, this build reads {OLDEST_READ_VERSION} to {RECORD_FORMAT_VERSION}"
        ));
    }
    let payload_len = u32_at(8) as usize;
    let expected = HEADER_LEN + payload_len + TRAILER_LEN;
    if bytes.len() != expected {
        return Err(format!(
            "{} bytes, header says {expected} (torn write?)",
            bytes.len()
        ));
    }
    let body_end = HEADER_LEN + payload_len;
    let stored_crc = u32_at(body_end);
    let crc = crc32(&bytes[..body_end]);
    if crc != stored_crc {
        return Err(format!(
            "CRC mismatch: stored {stored_crc:08x}, computed {crc:08x}"
        ));
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[12..20]);
    let (record, mut rest) = postcard::take_from_bytes::<KeptRecord>(&bytes[HEADER_LEN..body_end])
        .map_err(|e| format!("record does not decode: {e}"))?;
    let mut context = Vec::new();
    if version >= 2 {
        (context, rest) = postcard::take_from_bytes::<Vec<ContextFrame>>(rest)
            .map_err(|e| format!("context list does not decode: {e}"))?;
    }
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the record", rest.len()));
    }
    Ok(DecodedRecord {
        record,
        jpeg_len: u64::from_le_bytes(len_bytes),
        jpeg_crc: u32_at(20),
        context,
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, as in zlib and PNG).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn entry_names_are_exactly_twelve_digits() {
        assert_eq!(parse_entry_name("000000000001.jpg"), Some((1, JPG_EXT)));
        assert_eq!(
            parse_entry_name("999999999999.rec"),
            Some((MAX_ID, REC_EXT))
        );
        for stray in [
            "18446744073709551615.jpg",
            "1000000000000.rec",
            "00000000001.jpg",
        ] {
            assert_eq!(parse_entry_name(stray), None, "{stray}");
            assert!(is_stray_entry_name(stray), "{stray}");
        }
        assert!(!is_stray_entry_name("notes.txt"));
        assert!(!is_stray_entry_name("000000000001.jpg"));
    }
}
