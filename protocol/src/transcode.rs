//! Payload transcoding between the two hub protocols: JSON text ⇄ MessagePack bytes, one value
//! at a time. This module owns the value mapping used when a message arrives in one protocol and
//! leaves in the other (the REST API sends JSON arguments to MessagePack clients; a MessagePack
//! client's arguments go to JSON clients).
//!
//! The mapping follows what the .NET serializers produce for the same data: MessagePack `bin` ⇄
//! base64 string, the timestamp extension (-1) → ISO-8601 UTC string (`2017-04-11T00:00:00Z`),
//! integers in their smallest MessagePack form, other JSON numbers as float64. Both directions
//! stream (no intermediate value tree) and bound nesting depth, so hostile input returns an error
//! instead of exhausting the stack.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::json::{write_i64, write_json_string};
use super::msgpack::{self, Reader};
use super::{ByteSink, ProtocolError};

/// The deepest nesting [`msgpack_to_json`] follows (serde_json's own limit for the other way).
pub const MAX_DEPTH: usize = 128;

/// Appends the MessagePack encoding of the single JSON value in `json` (surrounding whitespace
/// allowed). On error nothing is appended.
pub fn json_to_msgpack<S: ByteSink>(json: &[u8], out: &mut S) -> Result<(), ProtocolError> {
    let start = out.written();
    let mut de = serde_json::Deserializer::from_slice(json);
    let result = ToMsgpack { out: &mut *out }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    result.map_err(|err| {
        out.truncate_to(start);
        ProtocolError::InvalidData(format!("Invalid JSON value: {err}"))
    })
}

/// Appends the JSON text of the single MessagePack value in `mp`. `bin` becomes a base64 string,
/// a timestamp extension an ISO-8601 string; other extension types become the base64 string of
/// their data. Non-string map keys are written as their JSON text in a string; such a key may not
/// hold non-string keys itself (each level would escape the one inside again, doubling the text
/// per level). On error nothing is appended.
pub fn msgpack_to_json<S: ByteSink>(mp: &[u8], out: &mut S) -> Result<(), ProtocolError> {
    let start = out.written();
    let mut reader = Reader::new(mp);
    let result = write_json_value(&mut reader, out, 0, false).and_then(|()| {
        if reader.remaining().is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::invalid(
                "Trailing bytes after the MessagePack value.",
            ))
        }
    });
    if result.is_err() {
        out.truncate_to(start);
    }
    result
}

/// Formats the data of a MessagePack timestamp extension (type -1; 4, 8 or 12 bytes) as ISO-8601
/// UTC the way .NET writes a UTC `DateTime`: `2018-01-01T11:24:00Z`, with up to 7 fractional
/// digits (100 ns ticks, trailing zeros trimmed) when the time has a fraction. `None` if `data`
/// is not a valid timestamp.
pub fn timestamp_to_iso8601(data: &[u8]) -> Option<String> {
    let (seconds, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..].try_into().ok()?),
            u32::from_be_bytes(data[..4].try_into().ok()?),
        ),
        _ => return None,
    };
    if nanos >= 1_000_000_000 {
        return None;
    }
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    );
    let ticks = nanos / 100;
    if ticks > 0 {
        let fraction = format!("{ticks:07}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    Some(text)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`; no overflow for any `i64` second count / 86 400).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------
// JSON → MessagePack
// ---------------------------------------------------------------------------------------------

/// Writes the visited JSON value as MessagePack. Container headers are inserted in front of
/// their elements once the element count is known.
struct ToMsgpack<'o, S> {
    out: &'o mut S,
}

impl<'de, S: ByteSink> DeserializeSeed<'de> for ToMsgpack<'_, S> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Inserts a container header of `count` elements at `start`, in front of what follows it.
fn insert_header<S: ByteSink>(
    out: &mut S,
    start: usize,
    count: usize,
    map: bool,
) -> Result<(), &'static str> {
    let count = u32::try_from(count).map_err(|_| "too many elements for MessagePack")?;
    let mut header = Vec::with_capacity(5);
    if map {
        msgpack::write_map_len(count, &mut header);
    } else {
        msgpack::write_array_len(count, &mut header);
    }
    let end = out.written();
    out.put(&header);
    let buf = out.contents_mut();
    buf.copy_within(start..end, start + header.len());
    buf[start..start + header.len()].copy_from_slice(&header);
    Ok(())
}

impl<'de, S: ByteSink> Visitor<'de> for ToMsgpack<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        msgpack::write_bool(v, self.out);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        msgpack::write_sint(v, self.out);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        msgpack::write_uint(v, self.out);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        msgpack::write_f64(v, self.out);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        msgpack::write_str(v, self.out);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        msgpack::write_nil(self.out);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.out;
        let start = out.written();
        let mut count = 0usize;
        while seq
            .next_element_seed(ToMsgpack { out: &mut *out })?
            .is_some()
        {
            count += 1;
        }
        insert_header(out, start, count, false).map_err(de::Error::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        let start = out.written();
        let mut count = 0usize;
        while map.next_key_seed(ToMsgpack { out: &mut *out })?.is_some() {
            map.next_value_seed(ToMsgpack { out: &mut *out })?;
            count += 1;
        }
        insert_header(out, start, count, true).map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// MessagePack → JSON
// ---------------------------------------------------------------------------------------------

fn truncated() -> ProtocolError {
    ProtocolError::invalid("Invalid MessagePack value.")
}

fn write_base64<S: ByteSink>(data: &[u8], out: &mut S) {
    out.put_byte(b'"');
    out.put(
        base64::engine::general_purpose::STANDARD
            .encode(data)
            .as_bytes(),
    );
    out.put_byte(b'"');
}

fn write_json_f64<S: ByteSink>(v: f64, short: Option<f32>, out: &mut S) {
    if !v.is_finite() {
        // JSON has no NaN/Infinity; write the strings System.Text.Json writes with
        // AllowNamedFloatingPointLiterals.
        let name = if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        write_json_string(name, out);
        return;
    }
    let magnitude = v.abs();
    let text = if magnitude == 0.0 || (1e-7..1e21).contains(&magnitude) {
        match short {
            Some(f) => f.to_string(),
            None => v.to_string(),
        }
    } else {
        match short {
            Some(f) => format!("{f:e}"),
            None => format!("{v:e}"),
        }
    };
    out.put(text.as_bytes());
}

/// Writes the value at `r`; `in_key`: it is (part of) a non-string map key.
fn write_json_value<S: ByteSink>(
    r: &mut Reader<'_>,
    out: &mut S,
    depth: usize,
    in_key: bool,
) -> Result<(), ProtocolError> {
    use rmp::Marker;
    if depth >= MAX_DEPTH {
        return Err(ProtocolError::invalid(
            "The MessagePack value is nested too deeply.",
        ));
    }
    let marker = Marker::from_u8(r.peek().ok_or_else(truncated)?);
    match marker {
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => {
            let v = r.int().ok_or_else(truncated)?;
            match i64::try_from(v) {
                Ok(v) => write_i64(v, out),
                Err(_) => out.put(v.to_string().as_bytes()),
            }
        }
        Marker::Null => {
            r.byte();
            out.put(b"null");
        }
        Marker::True | Marker::False => {
            let v = r.bool().ok_or_else(truncated)?;
            out.put(if v { b"true" } else { b"false" });
        }
        Marker::F32 => {
            r.byte();
            let v = f32::from_be_bytes(r.be().ok_or_else(truncated)?);
            write_json_f64(f64::from(v), Some(v), out);
        }
        Marker::F64 => {
            r.byte();
            let v = f64::from_be_bytes(r.be().ok_or_else(truncated)?);
            write_json_f64(v, None, out);
        }
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
            let mut probe = r.clone();
            if let Some(Some(s)) = probe.str_or_nil() {
                *r = probe;
                write_json_string(s, out);
            } else {
                // Not UTF-8 (or truncated): take the raw bytes and replace invalid sequences.
                let bytes = r.value().ok_or_else(truncated)?;
                write_json_string(&String::from_utf8_lossy(str_payload(bytes)), out);
            }
        }
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
            r.byte();
            let len = match marker {
                Marker::Bin8 => r.byte().map(usize::from),
                Marker::Bin16 => r.be_u16().map(usize::from),
                _ => r.be_u32().map(|n| n as usize),
            }
            .ok_or_else(truncated)?;
            write_base64(r.take(len).ok_or_else(truncated)?, out);
        }
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => {
            r.byte();
            let len = match marker {
                Marker::FixExt1 => Some(1),
                Marker::FixExt2 => Some(2),
                Marker::FixExt4 => Some(4),
                Marker::FixExt8 => Some(8),
                Marker::FixExt16 => Some(16),
                Marker::Ext8 => r.byte().map(usize::from),
                Marker::Ext16 => r.be_u16().map(usize::from),
                _ => r.be_u32().map(|n| n as usize),
            }
            .ok_or_else(truncated)?;
            let ext_type = r.byte().ok_or_else(truncated)? as i8;
            let data = r.take(len).ok_or_else(truncated)?;
            match (ext_type, timestamp_to_iso8601(data)) {
                (-1, Some(iso)) => write_json_string(&iso, out),
                _ => write_base64(data, out),
            }
        }
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let count = r.array_len().ok_or_else(truncated)?;
            out.put_byte(b'[');
            for i in 0..count {
                if i > 0 {
                    out.put_byte(b',');
                }
                write_json_value(r, out, depth + 1, in_key)?;
            }
            out.put_byte(b']');
        }
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let count = r.map_len().ok_or_else(truncated)?;
            out.put_byte(b'{');
            for i in 0..count {
                if i > 0 {
                    out.put_byte(b',');
                }
                write_json_key(r, out, depth + 1, in_key)?;
                out.put_byte(b':');
                write_json_value(r, out, depth + 1, in_key)?;
            }
            out.put_byte(b'}');
        }
        Marker::Reserved => return Err(truncated()),
    }
    Ok(())
}

/// The bytes of a str value without its header.
fn str_payload(value: &[u8]) -> &[u8] {
    let header = match value.first().copied().map(rmp::Marker::from_u8) {
        Some(rmp::Marker::Str8) => 2,
        Some(rmp::Marker::Str16) => 3,
        Some(rmp::Marker::Str32) => 5,
        _ => 1,
    };
    value.get(header..).unwrap_or_default()
}

/// Writes a map key: strings as themselves, anything else as its JSON text inside a string
/// (not inside another such key: `in_key`).
fn write_json_key<S: ByteSink>(
    r: &mut Reader<'_>,
    out: &mut S,
    depth: usize,
    in_key: bool,
) -> Result<(), ProtocolError> {
    let mut probe = r.clone();
    if let Some(Some(key)) = probe.str_or_nil() {
        *r = probe;
        write_json_string(key, out);
        return Ok(());
    }
    if in_key {
        return Err(ProtocolError::invalid(
            "A map key that is not a string contains another such key.",
        ));
    }
    let mut text = Vec::new();
    write_json_value(r, &mut text, depth, true)?;
    if text.first() == Some(&b'"') {
        out.put(&text);
    } else {
        write_json_string(&String::from_utf8_lossy(&text), out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_json(mp: &[u8]) -> String {
        let mut out = Vec::new();
        msgpack_to_json(mp, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn to_mp(json: &str) -> Vec<u8> {
        let mut out = Vec::new();
        json_to_msgpack(json.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn json_to_msgpack_uses_small_forms() {
        assert_eq!(
            to_mp("[1,\"a\",null,true,-1,300]"),
            b"\x96\x01\xa1a\xc0\xc3\xff\xcd\x01\x2c"
        );
        assert_eq!(to_mp(" {\"k\":[]} "), b"\x81\xa1k\x90");
        assert_eq!(to_mp("2.5"), b"\xcb\x40\x04\x00\x00\x00\x00\x00\x00");
        let big: String = format!("[{}]", vec!["0"; 20].join(","));
        let mp = to_mp(&big);
        assert_eq!(&mp[..3], &[0xdc, 0x00, 20]);
        assert_eq!(mp.len(), 23);
    }

    #[test]
    fn json_to_msgpack_rejects_bad_input_without_output() {
        for bad in ["", "[1", "[1] x", "{\"a\"}", "\"\\ud800\""] {
            let mut out = vec![7];
            assert!(json_to_msgpack(bad.as_bytes(), &mut out).is_err(), "{bad}");
            assert_eq!(out, [7]);
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(json_to_msgpack(deep.as_bytes(), &mut Vec::new()).is_err());
    }

    #[test]
    fn msgpack_to_json_maps_bin_and_timestamps() {
        assert_eq!(to_json(b"\xc4\x03\x01\x02\x03"), "\"AQID\"");
        assert_eq!(
            to_json(b"\xd6\xff\x58\xec\x1c\x80"),
            "\"2017-04-11T00:00:00Z\""
        );
        assert_eq!(
            to_json(b"\xd6\xff\x5a\x4a\x1a\x50"),
            "\"2018-01-01T11:24:00Z\""
        );
        assert_eq!(to_json(b"\xca\x42\x28\x00\x00"), "42");
        assert_eq!(
            to_json(b"\xcb\x40\x19\x21\xfb\x54\x42\xcf\x12"),
            "6.2831853071"
        );
        assert_eq!(
            to_json(b"\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"),
            "\"Infinity\""
        );
        assert_eq!(
            to_json(b"\x82\x01\xa1x\xc3\x90"),
            "{\"1\":\"x\",\"true\":[]}"
        );
        assert_eq!(
            to_json(b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"),
            "18446744073709551615"
        );
    }

    #[test]
    fn timestamps_with_fractions() {
        // 8-byte form: 500 ms after the epoch.
        let v: u64 = 500_000_000u64 << 34;
        assert_eq!(
            timestamp_to_iso8601(&v.to_be_bytes()).unwrap(),
            "1970-01-01T00:00:00.5Z"
        );
        // 12-byte form, before the epoch.
        let mut data = 0u32.to_be_bytes().to_vec();
        data.extend_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(timestamp_to_iso8601(&data).unwrap(), "1969-12-31T23:59:59Z");
        let mut extreme = 0u32.to_be_bytes().to_vec();
        extreme.extend_from_slice(&i64::MIN.to_be_bytes());
        assert!(timestamp_to_iso8601(&extreme).is_some());
        assert_eq!(timestamp_to_iso8601(&[1, 2, 3]), None);
    }

    #[test]
    fn msgpack_to_json_rejects_bad_input_without_output() {
        let deep: Vec<u8> = std::iter::repeat_n(0x91, 1000).chain([0xc0]).collect();
        for bad in [
            &b""[..],
            b"\x92\x01",
            b"\xc1",
            b"\xa3ab",
            b"\x01\x02",
            &deep,
        ] {
            let mut out = vec![7];
            assert!(msgpack_to_json(bad, &mut out).is_err(), "{bad:?}");
            assert_eq!(out, [7]);
        }
        assert_eq!(to_json(b"\xa2\xff\xfe"), "\"\u{fffd}\u{fffd}\"");
    }

    #[test]
    fn non_string_keys_are_written_as_their_json_text() {
        // {1: "a", [true]: nil, {"k": 2}: 3}
        let mp = b"\x83\x01\xa1a\x91\xc3\xc0\x81\xa1k\x02\x03";
        assert_eq!(to_json(mp), r#"{"1":"a","[true]":null,"{\"k\":2}":3}"#);
    }

    #[test]
    fn non_string_keys_inside_non_string_keys_are_refused() {
        // Each level of keys-in-keys would escape the text of the one inside again: the text
        // doubles per level, exponential in the input size. {{1: nil}: nil} is refused, and so is
        // any deeper nesting, quickly.
        for depth in [2, 60] {
            let mut mp = Vec::new();
            mp.extend(std::iter::repeat_n(0x81, depth));
            mp.push(0x01);
            mp.extend(std::iter::repeat_n(0xc0, depth));
            let mut out = Vec::new();
            assert!(msgpack_to_json(&mp, &mut out).is_err(), "depth {depth}");
            assert!(out.is_empty());
        }
        // Keys inside arrays of a non-string key count too: {[{1: nil}]: nil}.
        let mut out = Vec::new();
        assert!(msgpack_to_json(b"\x81\x91\x81\x01\xc0\xc0", &mut out).is_err());
    }

    #[test]
    fn roundtrip_through_both_directions() {
        let json = r#"[1,-5,"x\n",{"a":[true,false,null]},1.5,18446744073709551615]"#;
        assert_eq!(to_json(&to_mp(json)), json);
    }
}
