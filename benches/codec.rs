//! Criterion benchmarks of the hub protocol codecs: decode and encode of a blocking Invocation per
//! protocol at a ~100 B and a ~2 KB argument payload, and `encode_invocation_json_args` (the REST
//! broadcast path, including the JSON → MessagePack transcode); and one JSON message arriving a
//! byte at a time, decoded after every byte with and without a [`RecordScan`] (issue 13: the
//! search for the separator must not start over on every arrival).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard::protocol::framing::RecordScan;
use switchboard::protocol::{
    HubMessage, HubProtocol, Invocation, RawValue, encode_invocation_json_args, transcode,
};

/// A JSON argument array of about `size` bytes: a number, a short string and a long string.
fn arguments_json(size: usize) -> String {
    let filler = "x".repeat(size.saturating_sub(20));
    format!("[42,\"hello\",\"{filler}\"]")
}

/// The same Invocation with its arguments in the protocol's native encoding.
fn invocation(p: HubProtocol, args_json: &str) -> HubMessage {
    let arguments = match p {
        HubProtocol::Json => RawValue::Json(Bytes::copy_from_slice(args_json.as_bytes())),
        HubProtocol::MessagePack => {
            let mut mp = Vec::new();
            transcode::json_to_msgpack(args_json.as_bytes(), &mut mp).expect("valid JSON");
            RawValue::MessagePack(mp.into())
        }
    };
    HubMessage::Invocation(Invocation {
        headers: Vec::new(),
        invocation_id: Some("17".to_owned()),
        target: "SendMessage".to_owned(),
        arguments,
        stream_ids: Vec::new(),
    })
}

fn codec(c: &mut Criterion) {
    for size in [100usize, 2048] {
        let args = arguments_json(size);
        let mut group = c.benchmark_group(format!("invocation_{size}B"));
        for p in [HubProtocol::Json, HubProtocol::MessagePack] {
            let msg = invocation(p, &args);
            let frame = p.encode(&msg).expect("encodes");
            group.throughput(Throughput::Bytes(frame.len() as u64));
            group.bench_with_input(BenchmarkId::new("decode", p.name()), &frame, |b, frame| {
                b.iter(|| p.decode(black_box(frame), usize::MAX).expect("decodes"));
            });
            group.bench_with_input(
                BenchmarkId::new("decode_bytes", p.name()),
                &frame,
                |b, frame| {
                    b.iter(|| {
                        p.decode_bytes(black_box(frame), usize::MAX)
                            .expect("decodes")
                    });
                },
            );
            group.bench_with_input(BenchmarkId::new("encode", p.name()), &msg, |b, msg| {
                let mut out = BytesMut::with_capacity(4096);
                b.iter(|| {
                    out.clear();
                    p.encode_into(black_box(msg), &mut out).expect("encodes");
                });
            });
            group.bench_with_input(
                BenchmarkId::new("encode_json_args", p.name()),
                &args,
                |b, args| {
                    b.iter(|| {
                        encode_invocation_json_args(p, "SendMessage", black_box(args.as_bytes()))
                            .expect("encodes")
                    });
                },
            );
        }
        group.finish();
    }
}

/// An 8 KiB JSON message fed one byte at a time, decoded after each byte: `rescan` searches the
/// whole buffer every time (quadratic), `scanned` resumes where the last search stopped.
fn byte_at_a_time(c: &mut Criterion) {
    let p = HubProtocol::Json;
    let frame = p
        .encode(&invocation(p, &arguments_json(8 * 1024)))
        .expect("encodes");
    let mut group = c.benchmark_group("json_byte_at_a_time_8KiB");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("rescan", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(frame.len());
            for &byte in frame.iter() {
                buf.extend_from_slice(&[byte]);
                black_box(p.decode(&buf, usize::MAX).expect("decodes"));
            }
        });
    });
    group.bench_function("scanned", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(frame.len());
            let mut scan = RecordScan::default();
            for &byte in frame.iter() {
                buf.extend_from_slice(&[byte]);
                black_box(
                    p.decode_scanned(&buf, usize::MAX, &mut scan)
                        .expect("decodes"),
                );
            }
        });
    });
    group.finish();
}

criterion_group!(benches, codec, byte_at_a_time);
criterion_main!(benches);
