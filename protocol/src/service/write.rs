//! The service-protocol writer: [`ServiceMessage`] → the bytes of the newest SDK writer
//! (`ServiceProtocol.cs` `Write*Message`). The body is written twice: once into a byte counter to
//! learn its size, then after the length prefix into the output, so payloads are copied once.

use bytes::BytesMut;

use super::super::ByteSink;
use super::super::framing;
use super::super::msgpack::{
    write_array_len, write_bool, write_map_len, write_nil, write_sint, write_str, write_uint,
};
use super::{ConnectionType, Extensions, Headers, Payloads, ServiceMessage};

/// Appends the VarInt prefix and the body of `msg`.
pub(super) fn encode_into(msg: &ServiceMessage, out: &mut BytesMut) {
    let mut counter = Counter(0);
    write_body(msg, &mut counter);
    let len = counter.0;
    out.reserve(len + framing::varint_len(len));
    framing::write_varint(len, out);
    write_body(msg, out);
}

/// A sink that only counts what is written to it.
struct Counter(usize);

impl ByteSink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
    fn put_byte(&mut self, _byte: u8) {
        self.0 += 1;
    }
    fn written(&self) -> usize {
        self.0
    }
    fn contents_mut(&mut self) -> &mut [u8] {
        &mut []
    }
    fn truncate_to(&mut self, len: usize) {
        self.0 = self.0.min(len);
    }
}

/// A container length as written in a header (lengths beyond `u32` cannot occur in memory the
/// writer could be handed in practice; they are clamped rather than panicking).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn opt_str<S: ByteSink>(s: Option<&str>, out: &mut S) {
    match s {
        Some(s) => write_str(s, out),
        None => write_nil(out),
    }
}

fn int<S: ByteSink>(v: i32, out: &mut S) {
    write_sint(i64::from(v), out);
}

/// `bin8` / `bin16` / `bin32`, smallest form (MessagePack-CSharp `Write(ReadOnlySpan<byte>)`).
fn bin<S: ByteSink>(bytes: &[u8], out: &mut S) {
    let n = bytes.len();
    match n {
        0..=0xff => out.put(&[0xc4, n as u8]),
        0x100..=0xffff => {
            out.put_byte(0xc5);
            out.put(&(n as u16).to_be_bytes());
        }
        _ => {
            out.put_byte(0xc6);
            out.put(&count(n).to_be_bytes());
        }
    }
    out.put(bytes);
}

/// An int32 always in its 5-byte form (`d2`), as `WriteInt32` (ConnectionFlowControl).
fn fixed_int32<S: ByteSink>(v: i32, out: &mut S) {
    out.put_byte(0xd2);
    out.put(&v.to_be_bytes());
}

fn str_list<S: ByteSink>(list: &[String], out: &mut S) {
    write_array_len(count(list.len()), out);
    for s in list {
        write_str(s, out);
    }
}

fn payloads<S: ByteSink>(payloads: &Payloads, out: &mut S) {
    write_map_len(count(payloads.len()), out);
    for (key, value) in payloads {
        write_str(key, out);
        bin(value, out);
    }
}

fn headers<S: ByteSink>(headers: &Headers, out: &mut S) {
    write_map_len(count(headers.len()), out);
    for (name, values) in headers {
        write_str(name, out);
        str_list(values, out);
    }
}

/// Only the present members, in key order.
fn ext<S: ByteSink>(ext: &Extensions, out: &mut S) {
    write_map_len(count(ext.len()), out);
    if let Some(v) = ext.tracing_id {
        write_uint(1, out);
        write_uint(v, out);
    }
    if let Some(v) = ext.ttl {
        write_uint(2, out);
        int(v, out);
    }
    if let Some(v) = &ext.protocol {
        write_uint(3, out);
        write_str(v, out);
    }
    if let Some(v) = &ext.filter {
        write_uint(4, out);
        write_str(v, out);
    }
    if let Some(v) = ext.data_message_type {
        write_uint(5, out);
        int(v, out);
    }
    if let Some(v) = ext.is_partial {
        write_uint(6, out);
        write_bool(v, out);
    }
}

/// The array header and type id.
fn head<S: ByteSink>(len: u32, type_id: u8, out: &mut S) {
    write_array_len(len, out);
    write_uint(u64::from(type_id), out);
}

fn write_body<S: ByteSink>(msg: &ServiceMessage, out: &mut S) {
    use ServiceMessage as M;
    let t = msg.type_id();
    match msg {
        M::HandshakeRequest {
            version,
            connection_type,
            target,
            migration_level,
            extensions,
            allow_stateful_reconnects,
        } => {
            head(7, t, out);
            int(*version, out);
            int(connection_type.code(), out);
            // The SDK writes "" for a Default connection and never nil.
            let target = match connection_type {
                ConnectionType::Default => "",
                _ => target.as_deref().unwrap_or_default(),
            };
            write_str(target, out);
            int(*migration_level, out);
            ext(extensions, out);
            write_bool(*allow_stateful_reconnects, out);
        }
        M::HandshakeResponse {
            error_message,
            extensions,
            connection_id,
        } => {
            head(4, t, out);
            opt_str(error_message.as_deref(), out);
            ext(extensions, out);
            opt_str(connection_id.as_deref(), out);
        }
        M::Ping { messages } => {
            write_array_len(count(messages.len()).saturating_add(1), out);
            write_uint(u64::from(t), out);
            for m in messages {
                write_str(m, out);
            }
        }
        M::OpenConnection {
            connection_id,
            claims,
            headers: h,
            query_string,
            extensions,
        } => {
            head(6, t, out);
            write_str(connection_id, out);
            write_map_len(count(claims.len()), out);
            for (claim_type, value) in claims {
                write_str(claim_type, out);
                write_str(value, out);
            }
            headers(h, out);
            opt_str(query_string.as_deref(), out);
            ext(extensions, out);
        }
        M::CloseConnection {
            connection_id,
            error_message,
            headers: h,
            extensions,
        } => {
            head(5, t, out);
            write_str(connection_id, out);
            opt_str(error_message.as_deref(), out);
            headers(h, out);
            ext(extensions, out);
        }
        M::ConnectionData {
            connection_id,
            payload,
            extensions,
        } => {
            head(4, t, out);
            write_str(connection_id, out);
            bin(payload, out);
            ext(extensions, out);
        }
        M::MultiConnectionData {
            connection_list: list,
            payloads: p,
            extensions,
        }
        | M::MultiUserData {
            user_list: list,
            payloads: p,
            extensions,
        }
        | M::BroadcastData {
            excluded_list: list,
            payloads: p,
            extensions,
        }
        | M::MultiGroupBroadcastData {
            group_list: list,
            payloads: p,
            extensions,
        } => {
            head(4, t, out);
            str_list(list, out);
            payloads(p, out);
            ext(extensions, out);
        }
        M::UserData {
            user_id,
            payloads: p,
            extensions,
        } => {
            head(4, t, out);
            write_str(user_id, out);
            payloads(p, out);
            ext(extensions, out);
        }
        M::JoinGroup {
            connection_id: id,
            group_name,
            extensions,
        }
        | M::UserJoinGroup {
            user_id: id,
            group_name,
            extensions,
        } => {
            head(4, t, out);
            write_str(id, out);
            write_str(group_name, out);
            ext(extensions, out);
        }
        M::LeaveGroup {
            connection_id: id,
            group_name,
            extensions,
        }
        | M::UserLeaveGroup {
            user_id: id,
            group_name,
            extensions,
        } => {
            head(4, t, out);
            write_str(id, out);
            opt_str(group_name.as_deref(), out);
            ext(extensions, out);
        }
        M::GroupBroadcastData {
            group_name,
            excluded_list,
            payloads: p,
            extensions,
            excluded_user_list,
            caller_user_id,
        } => {
            head(7, t, out);
            write_str(group_name, out);
            str_list(excluded_list, out);
            payloads(p, out);
            ext(extensions, out);
            str_list(excluded_user_list, out);
            opt_str(caller_user_id.as_deref(), out);
        }
        M::ServiceError { error_message } => {
            head(2, t, out);
            opt_str(error_message.as_deref(), out);
        }
        M::JoinGroupWithAck {
            connection_id: id,
            group_name,
            ack_id,
            extensions,
        }
        | M::CheckUserInGroupWithAck {
            user_id: id,
            group_name,
            ack_id,
            extensions,
        }
        | M::UserJoinGroupWithAck {
            user_id: id,
            group_name,
            ack_id,
            extensions,
        } => {
            head(5, t, out);
            write_str(id, out);
            write_str(group_name, out);
            int(*ack_id, out);
            ext(extensions, out);
        }
        M::LeaveGroupWithAck {
            connection_id: id,
            group_name,
            ack_id,
            extensions,
        }
        | M::UserLeaveGroupWithAck {
            user_id: id,
            group_name,
            ack_id,
            extensions,
        } => {
            head(5, t, out);
            write_str(id, out);
            opt_str(group_name.as_deref(), out);
            int(*ack_id, out);
            ext(extensions, out);
        }
        M::Ack {
            ack_id,
            status,
            message,
            extensions,
            payload,
        } => {
            head(6, t, out);
            int(*ack_id, out);
            int(*status, out);
            opt_str(message.as_deref(), out);
            ext(extensions, out);
            match payload {
                Some(p) => bin(p, out),
                None => write_nil(out),
            }
        }
        M::ServiceEvent {
            object_type,
            id,
            kind,
            message,
            extensions,
        } => {
            head(6, t, out);
            int(*object_type, out);
            opt_str(id.as_deref(), out);
            int(*kind, out);
            opt_str(message.as_deref(), out);
            ext(extensions, out);
        }
        M::CheckGroupExistenceWithAck {
            group_name: id,
            ack_id,
            extensions,
        }
        | M::CheckConnectionExistenceWithAck {
            connection_id: id,
            ack_id,
            extensions,
        }
        | M::CheckUserExistenceWithAck {
            user_id: id,
            ack_id,
            extensions,
        } => {
            head(4, t, out);
            write_str(id, out);
            int(*ack_id, out);
            ext(extensions, out);
        }
        M::AccessKeyRequest {
            token,
            kid,
            extensions,
        } => {
            head(4, t, out);
            opt_str(token.as_deref(), out);
            opt_str(kid.as_deref(), out);
            ext(extensions, out);
        }
        M::AccessKeyResponse {
            kid,
            access_key,
            error_type,
            error_message,
            extensions,
        } => {
            head(6, t, out);
            opt_str(kid.as_deref(), out);
            opt_str(access_key.as_deref(), out);
            opt_str(error_type.as_deref(), out);
            opt_str(error_message.as_deref(), out);
            ext(extensions, out);
        }
        M::CloseConnectionWithAck {
            connection_id,
            reason,
            ack_id,
            extensions,
        } => {
            head(5, t, out);
            write_str(connection_id, out);
            opt_str(reason.as_deref(), out);
            int(*ack_id, out);
            ext(extensions, out);
        }
        M::CloseConnectionsWithAck {
            reason,
            ack_id,
            excluded_list,
            extensions,
        } => {
            head(5, t, out);
            opt_str(reason.as_deref(), out);
            int(*ack_id, out);
            str_list(excluded_list, out);
            ext(extensions, out);
        }
        M::CloseUserConnectionsWithAck {
            user_id: id,
            reason,
            ack_id,
            excluded_list,
            extensions,
        }
        | M::CloseGroupConnectionsWithAck {
            group_name: id,
            reason,
            ack_id,
            excluded_list,
            extensions,
        } => {
            head(6, t, out);
            write_str(id, out);
            opt_str(reason.as_deref(), out);
            int(*ack_id, out);
            str_list(excluded_list, out);
            ext(extensions, out);
        }
        M::ClientInvocation {
            invocation_id,
            connection_id,
            caller_server_id,
            payloads: p,
            extensions,
        } => {
            head(6, t, out);
            write_str(invocation_id, out);
            write_str(connection_id, out);
            write_str(caller_server_id, out);
            payloads(p, out);
            ext(extensions, out);
        }
        M::ClientCompletion {
            invocation_id,
            connection_id,
            caller_server_id,
            protocol,
            payload,
            extensions,
        } => {
            head(7, t, out);
            write_str(invocation_id, out);
            write_str(connection_id, out);
            write_str(caller_server_id, out);
            write_str(protocol, out);
            bin(payload, out);
            ext(extensions, out);
        }
        M::ErrorCompletion {
            invocation_id,
            connection_id,
            caller_server_id,
            error,
            extensions,
        } => {
            head(6, t, out);
            write_str(invocation_id, out);
            write_str(connection_id, out);
            write_str(caller_server_id, out);
            opt_str(error.as_deref(), out);
            ext(extensions, out);
        }
        M::ServiceMapping {
            invocation_id,
            connection_id,
            instance_id,
            extensions,
        } => {
            head(5, t, out);
            write_str(invocation_id, out);
            write_str(connection_id, out);
            opt_str(instance_id.as_deref(), out);
            ext(extensions, out);
        }
        M::ConnectionReconnect {
            connection_id,
            extensions,
        } => {
            head(3, t, out);
            write_str(connection_id, out);
            ext(extensions, out);
        }
        M::ConnectionFlowControl {
            connection_id,
            connection_type,
            operation,
            extensions,
        } => {
            head(5, t, out);
            write_str(connection_id, out);
            fixed_int32(*connection_type, out);
            fixed_int32(*operation, out);
            ext(extensions, out);
        }
        M::GroupMemberQuery {
            extensions,
            group_name,
            ack_id,
            max,
            continuation_token,
        } => {
            head(6, t, out);
            ext(extensions, out);
            write_str(group_name, out);
            int(*ack_id, out);
            int(*max, out);
            opt_str(continuation_token.as_deref(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn body(msg: &ServiceMessage) -> Vec<u8> {
        let mut out = Vec::new();
        write_body(msg, &mut out);
        out
    }

    #[test]
    fn counter_matches_the_written_size() {
        let long = Bytes::from(vec![7u8; 70_000]);
        let msg = ServiceMessage::ConnectionData {
            connection_id: "c".repeat(300),
            payload: long,
            extensions: Extensions {
                tracing_id: Some(u64::MAX),
                ttl: Some(-5),
                protocol: Some("json".into()),
                filter: Some("x".repeat(40)),
                data_message_type: Some(2),
                is_partial: Some(false),
            },
        };
        let mut counter = Counter(0);
        write_body(&msg, &mut counter);
        assert_eq!(counter.written(), body(&msg).len());
        let mut framed = BytesMut::new();
        encode_into(&msg, &mut framed);
        assert_eq!(
            framing::read_varint(&framed),
            Ok(Some((counter.0, framing::varint_len(counter.0))))
        );
    }

    #[test]
    fn binary_forms() {
        let mut out = Vec::new();
        bin(&[], &mut out);
        bin(&[1; 256], &mut out);
        assert_eq!(&out[..2], [0xc4, 0x00]);
        assert_eq!(&out[2..5], [0xc5, 0x01, 0x00]);
        let mut out = Vec::new();
        bin(&vec![0; 65_536], &mut out);
        assert_eq!(&out[..5], [0xc6, 0x00, 0x01, 0x00, 0x00]);
        let mut out = Vec::new();
        fixed_int32(-1, &mut out);
        assert_eq!(out, [0xd2, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn target_is_empty_for_default_connections() {
        let msg = ServiceMessage::HandshakeRequest {
            version: 1,
            connection_type: ConnectionType::Default,
            target: Some("ignored".into()),
            migration_level: 0,
            extensions: Extensions::default(),
            allow_stateful_reconnects: false,
        };
        assert_eq!(body(&msg), [0x97, 1, 1, 0, 0xa0, 0, 0x80, 0xc2]);
        let msg = ServiceMessage::HandshakeRequest {
            version: 1,
            connection_type: ConnectionType::Weak,
            target: None,
            migration_level: 2,
            extensions: Extensions::default(),
            allow_stateful_reconnects: true,
        };
        assert_eq!(body(&msg), [0x97, 1, 1, 2, 0xa0, 2, 0x80, 0xc3]);
    }
}
