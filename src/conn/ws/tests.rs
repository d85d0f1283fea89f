//! The upgraded socket against a peer on real TCP, by the sections of the Autobahn test suite's
//! case list: framing (1), pings and pongs (2), reserved bits (3), opcodes (4), fragmentation
//! (5), UTF-8 (6), the close handshake (7) and limits (9). The peer's frames are encoded, and
//! the socket's decoded, by actix-http's parser in its client role (masked frames out,
//! unmasked in): a second implementation than the tungstenite header encoder under test.

use std::time::Duration;

use actix_http::ws::{OpCode, Parser};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const T: Duration = Duration::from_secs(5);

/// The server's end of a TCP connection and its peer.
async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (io, _) = listener.accept().await.unwrap();
    (io, peer)
}

/// The server's socket (messages of at most `max` bytes) and its peer.
async fn pair(max: usize) -> (WsSocket, TcpStream) {
    let (io, peer) = tcp_pair().await;
    (
        WsSocket::new(Stream::plain(io), BytesMut::new(), max, Arc::default()),
        peer,
    )
}

/// A client's (masked) frame.
fn frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    Parser::write_message(&mut out, payload, op, fin, true);
    out.to_vec()
}

async fn recv(socket: &mut WsSocket) -> WsEvent {
    tokio::time::timeout(T, socket.recv())
        .await
        .expect("an event within 5 s")
}

fn message(bytes: &[u8]) -> WsEvent {
    WsEvent::Message(Bytes::copy_from_slice(bytes))
}

fn is_protocol_error(event: &WsEvent) -> bool {
    matches!(event, WsEvent::Invalid(CloseReason::ProtocolError(_)))
}

/// Frames the peer reads until `n` arrived: (fin, opcode, payload).
async fn read_frames(peer: &mut TcpStream, n: usize) -> Vec<(bool, OpCode, Vec<u8>)> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some((fin, op, payload)) = Parser::parse(&mut buf, false, usize::MAX).unwrap() {
            out.push((fin, op, payload.map(|p| p.to_vec()).unwrap_or_default()));
            if out.len() == n {
                return out;
            }
        }
        let read = tokio::time::timeout(T, peer.read_buf(&mut buf))
            .await
            .expect("a frame within 5 s")
            .unwrap();
        assert!(read > 0, "the socket closed after {} frames", out.len());
    }
    out
}

#[tokio::test]
async fn framing_1_text_and_binary_of_every_length_class_both_ways() {
    let (mut socket, mut peer) = pair(1 << 20).await;
    // The length classes of RFC 6455 §5.2: 7 bits, 16 bits, 64 bits, and their edges.
    for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        peer.write_all(&frame(OpCode::Text, true, &payload))
            .await
            .unwrap();
        assert_eq!(recv(&mut socket).await, message(&payload), "text of {len}");
        peer.write_all(&frame(OpCode::Binary, true, &payload))
            .await
            .unwrap();
        assert_eq!(
            recv(&mut socket).await,
            message(&payload),
            "binary of {len}"
        );

        let writer = async {
            socket.send(false, &payload).await.unwrap();
            socket.send(true, &payload).await.unwrap();
        };
        let (_, frames) = tokio::join!(writer, read_frames(&mut peer, 2));
        assert_eq!(
            frames[0],
            (true, OpCode::Text, payload.clone()),
            "text of {len}"
        );
        assert_eq!(
            frames[1],
            (true, OpCode::Binary, payload),
            "binary of {len}"
        );
    }
}

#[tokio::test]
async fn framing_1_frames_split_anywhere_or_sent_together_arrive_whole_and_in_order() {
    let (mut socket, mut peer) = pair(1 << 16).await;
    // Byte by byte.
    let one = frame(OpCode::Text, true, b"{\"type\":6}\x1e");
    for b in &one {
        peer.write_all(&[*b]).await.unwrap();
        peer.flush().await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(recv(&mut socket).await, message(b"{\"type\":6}\x1e"));
    // Three frames in one write.
    let mut three = frame(OpCode::Binary, true, b"a");
    three.extend(frame(OpCode::Binary, true, b"bb"));
    three.extend(frame(OpCode::Text, true, b"ccc"));
    peer.write_all(&three).await.unwrap();
    for expected in [&b"a"[..], b"bb", b"ccc"] {
        assert_eq!(recv(&mut socket).await, message(expected));
    }
    // Nothing is kept between messages.
    assert_eq!(socket.read.capacity(), 0);
    assert!(socket.fragments.is_none() && socket.control.capacity() == 0);
}

#[tokio::test]
async fn framing_1_bytes_read_with_the_handshake_come_first() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut peer = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (io, _) = listener.accept().await.unwrap();
    let early = frame(OpCode::Text, true, b"early");
    let mut socket = WsSocket::new(
        Stream::plain(io),
        BytesMut::from(&early[..]),
        1024,
        Arc::default(),
    );
    peer.write_all(&frame(OpCode::Text, true, b"late"))
        .await
        .unwrap();
    assert_eq!(recv(&mut socket).await, message(b"early"));
    assert_eq!(recv(&mut socket).await, message(b"late"));
}

#[tokio::test]
async fn framing_1_an_unmasked_client_frame_is_a_protocol_error() {
    let (mut socket, mut peer) = pair(1024).await;
    let mut unmasked = BytesMut::new();
    Parser::write_message(&mut unmasked, b"x", OpCode::Text, true, false);
    peer.write_all(&unmasked).await.unwrap();
    assert!(is_protocol_error(&recv(&mut socket).await));
    // Nothing more is read after a refusal.
    assert_eq!(recv(&mut socket).await, WsEvent::Gone);
}

#[tokio::test]
async fn pings_2_are_answered_with_their_payload_and_pongs_ignored() {
    let (mut socket, mut peer) = pair(1024).await;
    let mut input = frame(OpCode::Ping, true, b"");
    input.extend(frame(OpCode::Ping, true, &[7u8; 125]));
    input.extend(frame(OpCode::Pong, true, b"unsolicited"));
    input.extend(frame(OpCode::Text, true, b"after"));
    peer.write_all(&input).await.unwrap();
    assert_eq!(recv(&mut socket).await, message(b"after"));
    // The pongs go out before the next data frame.
    let writer = async { socket.send(true, b"data").await.unwrap() };
    let (_, frames) = tokio::join!(writer, read_frames(&mut peer, 3));
    assert_eq!(frames[0], (true, OpCode::Pong, vec![]));
    assert_eq!(frames[1], (true, OpCode::Pong, vec![7u8; 125]));
    assert_eq!(frames[2], (true, OpCode::Binary, b"data".to_vec()));
}

#[tokio::test]
async fn pings_2_are_answered_while_waiting_for_input() {
    let (mut socket, mut peer) = pair(1024).await;
    peer.write_all(&frame(OpCode::Ping, true, b"hello"))
        .await
        .unwrap();
    // The socket answers while its reader waits for a message that has not come.
    let reader = async { tokio::time::timeout(Duration::from_millis(500), socket.recv()).await };
    let (waited, frames) = tokio::join!(reader, read_frames(&mut peer, 1));
    assert!(waited.is_err(), "no message came");
    assert_eq!(frames[0], (true, OpCode::Pong, b"hello".to_vec()));
}

#[tokio::test]
async fn pings_2_a_control_frame_over_125_bytes_is_a_protocol_error() {
    let (mut socket, mut peer) = pair(1024).await;
    peer.write_all(&frame(OpCode::Ping, true, &[0u8; 126]))
        .await
        .unwrap();
    assert!(is_protocol_error(&recv(&mut socket).await));
}

#[tokio::test]
async fn pings_2_a_flood_of_pings_without_reading_queues_a_bounded_answer() {
    let (mut socket, mut peer) = pair(1024).await;
    let mut input = Vec::new();
    for _ in 0..1000 {
        input.extend(frame(OpCode::Ping, true, &[1u8; 100]));
    }
    input.extend(frame(OpCode::Text, true, b"end"));
    let writer = async { peer.write_all(&input).await.unwrap() };
    let (_, got) = tokio::join!(writer, recv(&mut socket));
    assert_eq!(got, message(b"end"));
    assert!(socket.control.len() <= MAX_QUEUED_CONTROL);
    // 1,000 Pongs of 102 bytes decoded between two writes do not fit: the rest are counted.
    let skipped = socket.metrics.pongs_skipped.load(Ordering::Relaxed);
    assert!((1..1000).contains(&skipped), "{skipped} skipped");
}

#[tokio::test]
async fn reserved_bits_3_are_a_protocol_error() {
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        let (mut socket, mut peer) = pair(1024).await;
        let mut f = frame(OpCode::Text, true, b"x");
        f[0] |= rsv;
        peer.write_all(&f).await.unwrap();
        assert!(is_protocol_error(&recv(&mut socket).await), "rsv {rsv:#x}");
    }
}

#[tokio::test]
async fn opcodes_4_reserved_ones_are_a_protocol_error() {
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let (mut socket, mut peer) = pair(1024).await;
        let mut f = frame(OpCode::Text, true, b"x");
        f[0] = 0x80 | opcode;
        peer.write_all(&f).await.unwrap();
        assert!(
            is_protocol_error(&recv(&mut socket).await),
            "opcode {opcode:#x}"
        );
    }
}

#[tokio::test]
async fn fragmentation_5_fragments_are_joined_with_control_frames_between() {
    let (mut socket, mut peer) = pair(1024).await;
    let mut input = frame(OpCode::Text, false, b"he");
    input.extend(frame(OpCode::Ping, true, b"p"));
    input.extend(frame(OpCode::Continue, false, b""));
    input.extend(frame(OpCode::Continue, false, b"ll"));
    input.extend(frame(OpCode::Continue, true, b"o"));
    input.extend(frame(OpCode::Binary, false, &[1, 2]));
    input.extend(frame(OpCode::Continue, true, &[3]));
    peer.write_all(&input).await.unwrap();
    assert_eq!(recv(&mut socket).await, message(b"hello"));
    assert_eq!(recv(&mut socket).await, message(&[1, 2, 3]));
    let (_, frames) = tokio::join!(
        async { socket.send(true, b"").await.unwrap() },
        read_frames(&mut peer, 1)
    );
    assert_eq!(frames[0], (true, OpCode::Pong, b"p".to_vec()));
}

#[tokio::test]
async fn fragmentation_5_out_of_order_fragments_are_a_protocol_error() {
    // A continuation with nothing to continue (final or not).
    for fin in [true, false] {
        let (mut socket, mut peer) = pair(1024).await;
        peer.write_all(&frame(OpCode::Continue, fin, b"x"))
            .await
            .unwrap();
        assert!(is_protocol_error(&recv(&mut socket).await), "fin {fin}");
    }
    // A new message (fragmented or whole) before the last fragment.
    for (op, fin) in [
        (OpCode::Text, false),
        (OpCode::Text, true),
        (OpCode::Binary, true),
    ] {
        let (mut socket, mut peer) = pair(1024).await;
        let mut input = frame(OpCode::Text, false, b"a");
        input.extend(frame(op, fin, b"b"));
        peer.write_all(&input).await.unwrap();
        let event = recv(&mut socket).await;
        assert!(is_protocol_error(&event), "{op:?} fin {fin}: {event:?}");
    }
    // A fragmented control frame.
    let (mut socket, mut peer) = pair(1024).await;
    peer.write_all(&frame(OpCode::Ping, false, b"x"))
        .await
        .unwrap();
    assert!(is_protocol_error(&recv(&mut socket).await));
}

#[tokio::test]
async fn utf8_6_text_is_checked_on_the_whole_message() {
    let (mut socket, mut peer) = pair(1024).await;
    // "κόσμε" split inside a multi-byte character is valid once joined.
    let word = "κόσμε".as_bytes();
    let mut input = frame(OpCode::Text, false, &word[..3]);
    input.extend(frame(OpCode::Continue, true, &word[3..]));
    peer.write_all(&input).await.unwrap();
    assert_eq!(recv(&mut socket).await, message(word));
    // Binary messages are not text.
    peer.write_all(&frame(OpCode::Binary, true, &[0xff, 0xfe]))
        .await
        .unwrap();
    assert_eq!(recv(&mut socket).await, message(&[0xff, 0xfe]));
    // Invalid UTF-8 in a text message, whole or in fragments: 1007.
    for input in [
        frame(OpCode::Text, true, &[0xce, 0xba, 0xff]),
        [
            frame(OpCode::Text, false, &[0xce]),
            frame(OpCode::Continue, true, &[0x41]),
        ]
        .concat(),
        // A surrogate (ED A0 80) is not UTF-8.
        frame(OpCode::Text, true, &[0xed, 0xa0, 0x80]),
    ] {
        let (mut socket, mut peer) = pair(1024).await;
        peer.write_all(&input).await.unwrap();
        assert!(matches!(
            recv(&mut socket).await,
            WsEvent::Invalid(CloseReason::InvalidPayload(_))
        ));
    }
}

#[tokio::test]
async fn close_7_a_close_frame_ends_the_input_and_the_answer_carries_code_and_reason() {
    let (mut socket, mut peer) = pair(1024).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend(b"bye");
    let mut input = frame(OpCode::Close, true, &payload);
    // Nothing after a close frame is read.
    input.extend(frame(OpCode::Text, true, b"ignored"));
    peer.write_all(&input).await.unwrap();
    assert_eq!(recv(&mut socket).await, WsEvent::Closed);
    assert_eq!(recv(&mut socket).await, WsEvent::Gone);

    socket
        .close(&WsClose::new(WsClose::PROTOCOL_ERROR, "why"), T)
        .await;
    let frames = read_frames(&mut peer, 1).await;
    assert_eq!(frames[0].1, OpCode::Close);
    assert_eq!(frames[0].2[..2], 1002u16.to_be_bytes());
    assert_eq!(&frames[0].2[2..], b"why");
    // Then the stream ends.
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn close_7_an_empty_close_frame_is_fine_and_invalid_ones_are_protocol_errors() {
    let (mut socket, mut peer) = pair(1024).await;
    peer.write_all(&frame(OpCode::Close, true, b""))
        .await
        .unwrap();
    assert_eq!(recv(&mut socket).await, WsEvent::Closed);
    let invalid: [&[u8]; 5] = [
        // A payload of one byte.
        &[3],
        // Codes no endpoint may send (1005, 1006, 1015), and one not defined (999).
        &1005u16.to_be_bytes(),
        &1006u16.to_be_bytes(),
        &999u16.to_be_bytes(),
        // A reason that is not UTF-8.
        &[0x03, 0xe8, 0xff],
    ];
    for payload in invalid {
        let (mut socket, mut peer) = pair(1024).await;
        peer.write_all(&frame(OpCode::Close, true, payload))
            .await
            .unwrap();
        assert!(is_protocol_error(&recv(&mut socket).await), "{payload:?}");
    }
}

#[tokio::test]
async fn close_7_a_long_reason_is_cut_to_fit_a_control_frame() {
    let (mut socket, mut peer) = pair(1024).await;
    let reason = "é".repeat(100);
    socket
        .close(&WsClose::new(WsClose::TOO_BIG, &reason), T)
        .await;
    let frames = read_frames(&mut peer, 1).await;
    let text = std::str::from_utf8(&frames[0].2[2..]).expect("cut on a character boundary");
    assert!(frames[0].2.len() <= 125 && reason.starts_with(text) && !text.is_empty());
}

#[tokio::test]
async fn close_7_linger_reads_until_the_peer_closes() {
    let (mut socket, mut peer) = pair(1024).await;
    socket.close(&WsClose::normal(), T).await;
    // The peer still sends (its own close frame, late data) and then closes: no reset.
    peer.write_all(&frame(OpCode::Close, true, b""))
        .await
        .unwrap();
    peer.write_all(&[0u8; 10_000]).await.unwrap();
    let lingering = tokio::spawn(socket.linger());
    let frames = read_frames(&mut peer, 1).await;
    assert_eq!(frames[0].1, OpCode::Close);
    peer.shutdown().await.unwrap();
    tokio::time::timeout(T, lingering).await.unwrap().unwrap();
}

#[tokio::test]
async fn limits_9_a_frame_over_the_limit_is_refused_from_its_header() {
    let (mut socket, mut peer) = pair(1000).await;
    // Only the header of a 1 MiB frame: refused before the payload arrives.
    let mut header = frame(OpCode::Binary, true, &vec![0u8; 1 << 20]);
    header.truncate(14);
    peer.write_all(&header).await.unwrap();
    assert_eq!(
        recv(&mut socket).await,
        WsEvent::Invalid(CloseReason::MessageTooLarge(
            "The maximum message size of 1000B was exceeded.".into()
        ))
    );
    // A frame of exactly the limit is fine.
    let (mut socket, mut peer) = pair(1000).await;
    peer.write_all(&frame(OpCode::Binary, true, &[1u8; 1000]))
        .await
        .unwrap();
    assert_eq!(recv(&mut socket).await, message(&[1u8; 1000]));
}

#[tokio::test]
async fn limits_9_fragments_adding_up_past_the_limit_are_refused() {
    let (mut socket, mut peer) = pair(1000).await;
    let mut input = frame(OpCode::Text, false, &[b'a'; 600]);
    input.extend(frame(OpCode::Continue, true, &[b'a'; 401]));
    peer.write_all(&input).await.unwrap();
    assert!(matches!(
        recv(&mut socket).await,
        WsEvent::Invalid(CloseReason::MessageTooLarge(_))
    ));
    assert!(socket.fragments.is_none());
}

#[tokio::test]
async fn a_peer_that_goes_away_is_gone() {
    let (mut socket, peer) = pair(1024).await;
    drop(peer);
    assert_eq!(recv(&mut socket).await, WsEvent::Gone);
}

#[tokio::test]
async fn a_write_abandoned_half_way_leaves_the_socket_unusable() {
    let (mut socket, _peer) = pair(1024).await;
    // The peer never reads: a large write fills both kernel buffers and is abandoned.
    let big = vec![0u8; 64 << 20];
    let result = tokio::time::timeout(Duration::from_millis(200), socket.send(true, &big)).await;
    assert!(result.is_err(), "the write cannot complete");
    assert!(socket.send(true, b"x").await.is_err());
}

#[tokio::test]
async fn a_detached_socket_is_adopted_by_another_runtime() {
    let (io, mut peer) = tcp_pair().await;
    peer.write_all(&frame(OpCode::Text, true, b"moved"))
        .await
        .unwrap();
    let detached = Detached::new(Stream::plain(io), BytesMut::new()).unwrap();
    let got = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let mut socket = WsSocket::adopt(detached, 1024, Arc::default()).unwrap();
                recv(&mut socket).await
            })
    })
    .join()
    .unwrap();
    assert_eq!(got, message(b"moved"));
}

/// The next frame the peer reads, `buf` keeping what follows it.
async fn next_frame(peer: &mut TcpStream, buf: &mut BytesMut) -> (bool, OpCode, Vec<u8>) {
    loop {
        if let Some((fin, op, payload)) = Parser::parse(buf, false, usize::MAX).unwrap() {
            return (fin, op, payload.map(|p| p.to_vec()).unwrap_or_default());
        }
        let read = tokio::time::timeout(T, peer.read_buf(buf))
            .await
            .expect("a frame within 5 s")
            .unwrap();
        assert!(read > 0, "the socket closed");
    }
}

/// A JSON client's socket lent to its outbox (of the given bounds), its peer, and the
/// connection.
async fn lent_pair(max_messages: usize, max_bytes: usize) -> (WsSocket, TcpStream, ConnHandle) {
    let (mut socket, peer) = pair(1024).await;
    let conn = ConnHandle::new(
        "c".into(),
        None,
        crate::protocol::HubProtocol::Json,
        crate::peer::Outbox::new(max_messages, max_bytes),
    );
    socket.lend_to(conn.clone(), false);
    socket.lend();
    (socket, peer, conn)
}

/// The actor's loop for a lent socket, as `served`'s: lend while waiting, take the socket back
/// to write what the outbox queued, answer pings. Runs until the peer goes.
async fn serve_lent(socket: &mut WsSocket, conn: &ConnHandle) {
    let mut out = BytesMut::new();
    loop {
        socket.lend();
        tokio::select! {
            () = conn.outbox().ready() => {
                let mut single = None;
                conn.outbox().drain_into(&mut out, &mut single);
                let frame = single.or_else(|| (!out.is_empty()).then(|| out.split().freeze()));
                if let Some(frame) = frame {
                    socket.send(false, &frame).await.unwrap();
                }
            }
            event = socket.recv() => match event {
                WsEvent::Gone | WsEvent::Closed => return,
                other => panic!("unexpected {other:?}"),
            },
        }
    }
}

#[tokio::test]
async fn a_lent_socket_keeps_frames_whole_and_in_order_through_a_full_buffer() {
    let (mut socket, mut peer, conn) = lent_pair(1000, 64 << 20).await;
    // 64 KiB text messages while the peer does not read: the first are written by the
    // producer, one of them only in part, the rest queued for the actor.
    let messages: Vec<Bytes> = (0..96)
        .map(|i| Bytes::from(format!("{i:04}").repeat(16 * 1024)))
        .collect();
    let (mut written, mut queued) = (0, 0);
    for m in &messages {
        match conn.outbox().push_or_write(m.clone()).unwrap() {
            crate::peer::Pushed::Written => written += 1,
            crate::peer::Pushed::Queued => queued += 1,
        }
    }
    assert!(
        written > 0 && queued > 0,
        "the kernel's buffers fill part-way: {written} written directly, {queued} queued"
    );
    // A ping while bytes are owed: its pong must not split a message.
    peer.write_all(&frame(OpCode::Ping, true, b"p"))
        .await
        .unwrap();
    let expected: Vec<u8> = messages.concat();
    let mut buf = BytesMut::new();
    let reader = async {
        let mut got = Vec::new();
        let mut pongs = 0;
        while got.len() < expected.len() {
            let (fin, op, payload) = next_frame(&mut peer, &mut buf).await;
            assert!(fin);
            match op {
                OpCode::Text => got.extend_from_slice(&payload),
                OpCode::Pong => pongs += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        (got, pongs)
    };
    let (got, _pongs) = tokio::select! {
        r = reader => r,
        () = serve_lent(&mut socket, &conn) => panic!("the peer is still there"),
    };
    assert!(
        got == expected,
        "the messages arrived out of order or changed"
    );
    // Direct writes go on once the actor lends the socket again.
    assert_eq!(conn.outbox().len(), 0);
    socket.lend();
    assert_eq!(
        conn.outbox().push_or_write(Bytes::from_static(b"again")),
        Ok(crate::peer::Pushed::Written)
    );
    loop {
        let (_, op, payload) = next_frame(&mut peer, &mut buf).await;
        if op == OpCode::Text {
            assert_eq!(payload, b"again");
            break;
        }
        assert_eq!(op, OpCode::Pong);
    }
}

#[tokio::test]
async fn a_closed_socket_is_no_longer_lent() {
    let (mut socket, mut peer, conn) = lent_pair(10, 1 << 20).await;
    socket.close(&WsClose::normal(), T).await;
    assert_eq!(
        conn.outbox().push_or_write(Bytes::from_static(b"late")),
        Ok(crate::peer::Pushed::Queued)
    );
    let frames = read_frames(&mut peer, 1).await;
    assert_eq!(frames[0].1, OpCode::Close, "nothing after the close frame");
    let mut rest = Vec::new();
    tokio::time::timeout(T, peer.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "no frame after the close: {rest:?}");
}
