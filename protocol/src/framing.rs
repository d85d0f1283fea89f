//! Message framing shared by every SignalR byte stream: the JSON record separator (0x1E) that ends
//! each text message, and the VarInt length prefix that starts each binary (MessagePack) message
//! (`TextMessageParser.cs`, `BinaryMessageParser.cs`, `BinaryMessageFormatter.cs`).
//!
//! This module owns only the frame boundaries; it never looks inside a message body. It is also
//! used by the hub-server (service) protocol, which frames its MessagePack messages the same way.

use bytes::{BufMut, BytesMut};

/// The byte that ends every JSON message and the handshake (ASCII "record separator").
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// A VarInt prefix has at most 5 bytes: 7 bits each, and lengths stop at 2^31 − 1.
pub const MAX_VARINT_LEN: usize = 5;

/// The largest body length a VarInt prefix may announce (2^31 − 1, as .NET).
pub const MAX_FRAME_LEN: usize = i32::MAX as usize;

/// A framing error. The texts are those of the .NET parser.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// The length prefix is longer than 5 bytes or announces more than 2^31 − 1 bytes.
    #[error("Messages over 2GB in size are not supported.")]
    MessageOver2Gb,
}

/// Reads the VarInt length prefix at the start of `buf`.
///
/// Returns `Ok(None)` when `buf` ends inside the prefix (wait for more bytes), otherwise the
/// announced body length and the number of prefix bytes. A prefix whose 5th byte is above 7 or
/// still has its continuation bit set is an error, exactly as in .NET's `BinaryMessageParser`.
pub fn read_varint(buf: &[u8]) -> Result<Option<(usize, usize)>, FramingError> {
    let mut len: u32 = 0;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        if i == MAX_VARINT_LEN - 1 && byte > 0x07 {
            // A 5th byte can contribute only 3 more bits (31 in total); a continuation bit here
            // would make a 6-byte prefix. Both are "over 2GB".
            return Err(FramingError::MessageOver2Gb);
        }
        len |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((len as usize, i + 1)));
        }
    }
    Ok(None)
}

/// The number of bytes [`write_varint`] uses for `len`.
pub fn varint_len(len: usize) -> usize {
    match len {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

/// Writes `len` as a VarInt length prefix into a 5-byte array; returns the array and how many of
/// its bytes are used. Lengths above 2^31 − 1 are clamped (no SignalR peer accepts them anyway).
pub fn encode_varint(len: usize) -> ([u8; MAX_VARINT_LEN], usize) {
    let mut value = len.min(MAX_FRAME_LEN) as u32;
    let mut out = [0u8; MAX_VARINT_LEN];
    let mut n = 0;
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[n] = low;
            return (out, n + 1);
        }
        out[n] = low | 0x80;
        n += 1;
    }
}

/// Appends `len` as a VarInt length prefix (1–5 bytes, least significant group first).
pub fn write_varint(len: usize, out: &mut BytesMut) {
    let (bytes, n) = encode_varint(len);
    out.put_slice(&bytes[..n]);
}

/// Splits off the next text record: returns the record without its separator and the number of
/// bytes it occupied including the separator, or `None` when no separator has arrived yet.
///
/// This searches all of `buf`. A reader whose buffer grows a few bytes at a time uses
/// [`RecordScan::next_record`] instead, which does not search the same bytes twice.
pub fn next_text_record(buf: &[u8]) -> Option<(&[u8], usize)> {
    RecordScan::default().next_record(buf)
}

/// Where the search for the record separator stopped in a buffer that grows at its end: the
/// next search starts there, so every byte is looked at once however the bytes arrive.
///
/// Without it, each arrival searches the whole unterminated record again: n one-byte frames cost
/// n²/2 byte comparisons (a quarter of a million million for a 1 MiB record), on a worker thread
/// that serves other connections too.
///
/// Contract: between two calls the buffer only grows at its end, or loses the record the last
/// call returned (with anything else) from its front. After a call that found a record the scan
/// starts again from the front, which is right whether or not the caller removed the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordScan {
    /// The first bytes of the buffer hold no separator.
    searched: usize,
    /// Bytes looked at by this scan so far (for tests and benchmarks).
    examined: u64,
}

impl RecordScan {
    /// As [`next_text_record`], searching only the bytes after those the last call searched.
    pub fn next_record<'a>(&mut self, buf: &'a [u8]) -> Option<(&'a [u8], usize)> {
        let start = self.searched.min(buf.len());
        match buf[start..].iter().position(|&b| b == RECORD_SEPARATOR) {
            Some(i) => {
                self.examined += (i + 1) as u64;
                self.searched = 0;
                let end = start + i;
                Some((&buf[..end], end + 1))
            }
            None => {
                self.examined += (buf.len() - start) as u64;
                self.searched = buf.len();
                None
            }
        }
    }

    /// How many bytes this scan has looked at in total.
    pub fn examined(&self) -> u64 {
        self.examined
    }
}

/// Splits off the next binary frame: returns the body and the number of bytes the frame occupied
/// including its prefix, `Ok(None)` when the frame is not complete yet.
pub fn next_binary_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FramingError> {
    let Some((len, prefix)) = read_varint(buf)? else {
        return Ok(None);
    };
    let available = buf.len() - prefix;
    if available < len {
        return Ok(None);
    }
    Ok(Some((&buf[prefix..prefix + len], prefix + len)))
}

/// Appends `body` followed by the record separator.
pub fn write_text_record(body: &[u8], out: &mut BytesMut) {
    out.reserve(body.len() + 1);
    out.put_slice(body);
    out.put_u8(RECORD_SEPARATOR);
}

/// Appends the VarInt prefix for `body` followed by `body`.
pub fn write_binary_frame(body: &[u8], out: &mut BytesMut) {
    out.reserve(body.len() + MAX_VARINT_LEN);
    write_varint(body.len(), out);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(len: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_varint(len, &mut out);
        out.to_vec()
    }

    #[test]
    fn single_byte_varint() {
        assert_eq!(read_varint(&[0x00]), Ok(Some((0, 1))));
        assert_eq!(read_varint(&[0x0b]), Ok(Some((11, 1))));
        assert_eq!(read_varint(&[0x7f]), Ok(Some((127, 1))));
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(11), [0x0b]);
        assert_eq!(varint(127), [0x7f]);
    }

    #[test]
    fn multi_byte_varint() {
        assert_eq!(read_varint(&[0x80, 0x01]), Ok(Some((128, 2))));
        assert_eq!(read_varint(&[0x80, 0x29]), Ok(Some((5248, 2))));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x07]),
            Ok(Some((MAX_FRAME_LEN, 5)))
        );
        assert_eq!(varint(128), [0x80, 0x01]);
        assert_eq!(varint(5248), [0x80, 0x29]);
        assert_eq!(varint(MAX_FRAME_LEN), [0xff, 0xff, 0xff, 0xff, 0x07]);
        for len in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
            268_435_456,
        ] {
            let bytes = varint(len);
            assert_eq!(bytes.len(), varint_len(len));
            assert_eq!(read_varint(&bytes), Ok(Some((len, bytes.len()))));
        }
    }

    #[test]
    fn incomplete_varint() {
        assert_eq!(read_varint(&[]), Ok(None));
        assert_eq!(read_varint(&[0x80]), Ok(None));
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff]), Ok(None));
        assert_eq!(next_binary_frame(&[0x04, 0xab, 0xcd, 0xef]), Ok(None));
        assert_eq!(next_binary_frame(&[0x09, 0x00, 0x00]), Ok(None));
        assert_eq!(next_binary_frame(&[]), Ok(None));
    }

    #[test]
    fn too_large_varint() {
        let err = Err(FramingError::MessageOver2Gb);
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff]), err);
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x08]), err);
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), err);
        assert_eq!(
            FramingError::MessageOver2Gb.to_string(),
            "Messages over 2GB in size are not supported."
        );
    }

    #[test]
    fn trailing_data_is_left_alone() {
        let buf = [0x03, b'A', b'B', b'C', 0x02, 0x01];
        assert_eq!(next_binary_frame(&buf), Ok(Some((&b"ABC"[..], 4))));
        assert_eq!(next_binary_frame(&buf[4..]), Ok(None));
        assert_eq!(read_varint(&[0x0b, 0xff]), Ok(Some((11, 1))));
        let text = b"ABC\x1eXYZ\x1e123";
        assert_eq!(next_text_record(text), Some((&b"ABC"[..], 4)));
        assert_eq!(next_text_record(&text[4..]), Some((&b"XYZ"[..], 4)));
        assert_eq!(next_text_record(&text[8..]), None);
    }

    #[test]
    fn a_record_arriving_a_byte_at_a_time_is_searched_once() {
        // n one-byte frames, then the separator: every call looks at the new byte only.
        let n = 10_000;
        let mut buf = Vec::new();
        let mut scan = RecordScan::default();
        for _ in 0..n {
            buf.push(b'x');
            assert_eq!(scan.next_record(&buf), None);
        }
        buf.push(RECORD_SEPARATOR);
        assert_eq!(scan.next_record(&buf), Some((&buf[..n], n + 1)));
        assert_eq!(scan.examined(), n as u64 + 1);
    }

    #[test]
    fn a_scan_restarts_after_each_record() {
        let mut scan = RecordScan::default();
        let mut buf = b"AB".to_vec();
        assert_eq!(scan.next_record(&buf), None);
        buf.extend_from_slice(b"C\x1eXY");
        assert_eq!(scan.next_record(&buf), Some((&b"ABC"[..], 4)));
        // The caller removes the record; what follows it was not searched yet.
        buf.drain(..4);
        buf.extend_from_slice(b"\x1e");
        assert_eq!(scan.next_record(&buf), Some((&b"XY"[..], 3)));
        // A caller that keeps the record finds it again.
        assert_eq!(scan.next_record(&buf), Some((&b"XY"[..], 3)));
        // A buffer that shrank below the searched mark is searched from its end.
        let mut scan = RecordScan::default();
        assert_eq!(scan.next_record(b"abcdef"), None);
        assert_eq!(scan.next_record(b"ab"), None);
        assert_eq!(scan.next_record(b"ab\x1e"), Some((&b"ab"[..], 3)));
    }

    #[test]
    fn writers_frame_bodies() {
        let mut out = BytesMut::new();
        write_binary_frame(b"", &mut out);
        write_binary_frame(b"Hello,\r\nWorld!", &mut out);
        assert_eq!(&out[..], b"\x00\x0eHello,\r\nWorld!");
        let mut out = BytesMut::new();
        write_text_record(b"ABC", &mut out);
        assert_eq!(&out[..], b"ABC\x1e");
    }
}
