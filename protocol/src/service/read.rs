//! The service-protocol reader: one MessagePack array body → [`ServiceMessage`], following the
//! conditions of the SDK's `ServiceProtocol.cs` reader (which member is read at which array
//! length) and the leniency rules documented on the module ([`super`]).

use bytes::Bytes;
use rmp::Marker;

use super::super::Source;
use super::super::msgpack::Reader;
use super::{
    Claims, ConnectionType, Extensions, Headers, Payloads, ServiceMessage, ServiceProtocolError,
};

type Result<T> = std::result::Result<T, ServiceProtocolError>;

fn invalid(text: impl Into<String>) -> ServiceProtocolError {
    ServiceProtocolError::InvalidData(text.into())
}

/// Parses one body. `src` is the whole input and `body` a slice of it (payloads are taken from
/// `src` so that they can share its buffer).
pub(super) fn parse_body(src: Source<'_>, body: &[u8]) -> Result<Option<ServiceMessage>> {
    let mut r = Rd {
        r: Reader::new(body),
        src,
    };
    let len =
        r.r.array_len()
            .ok_or_else(|| invalid("Reading the message array header failed."))?;
    let type_id =
        r.r.int()
            .ok_or_else(|| invalid("Reading the message type failed."))?;
    let Some((type_id, min)) = u8::try_from(type_id)
        .ok()
        .and_then(|t| min_len(t).map(|min| (t, min)))
    else {
        // Future protocol changes add message types; they are ignored.
        return Ok(None);
    };
    if len < min {
        return Err(invalid(format!(
            "A message of type {type_id} has {len} elements; at least {min} are required."
        )));
    }
    parse_fields(&mut r, type_id, len).map(Some)
}

/// The shortest array (type id included) the reader accepts for a type; `None` for an unknown
/// type ("min" in `docs/protocol.md#message-catalogue`).
fn min_len(type_id: u8) -> Option<u32> {
    Some(match type_id {
        1 | 2 | 15 => 2,
        3 => 1,
        4..=12 | 14 | 16 | 17 | 38 => 3,
        13 | 18..=21 | 23..=25 | 28 | 30 | 31 | 39 => 4,
        26 | 27 | 32 | 33 | 37 => 5,
        22 | 29 | 34 | 36 | 40 => 6,
        35 => 7,
        _ => return None,
    })
}

fn parse_fields(r: &mut Rd<'_>, type_id: u8, len: u32) -> Result<ServiceMessage> {
    use ServiceMessage as M;
    let ext_if = |r: &mut Rd<'_>, at_least: u32| -> Result<Extensions> {
        if len >= at_least {
            r.ext()
        } else {
            Ok(Extensions::default())
        }
    };
    Ok(match type_id {
        1 => {
            let version = r.i32("version")?;
            let (connection_type, target) = if len >= 4 {
                (
                    ConnectionType::from_code(r.i32("connectionType")?),
                    r.opt_str("target")?,
                )
            } else {
                (ConnectionType::Default, None)
            };
            let migration_level = if len >= 5 {
                r.i32("migratableStatus")?
            } else {
                0
            };
            let extensions = ext_if(r, 6)?;
            let allow_stateful_reconnects = if len >= 7 {
                r.bool("enableStatefulReconnects")?
            } else {
                false
            };
            M::HandshakeRequest {
                version,
                connection_type,
                target,
                migration_level,
                extensions,
                allow_stateful_reconnects,
            }
        }
        2 => {
            let error_message = r.opt_str("errorMessage")?;
            let extensions = ext_if(r, 3)?;
            let connection_id = if len >= 4 {
                r.opt_str("connectionId")?
            } else {
                None
            };
            M::HandshakeResponse {
                error_message,
                extensions,
                connection_id,
            }
        }
        3 => {
            let mut messages = Vec::new();
            for _ in 1..len {
                messages.push(r.str_or_empty("messages[]")?);
            }
            M::Ping { messages }
        }
        4 => {
            let connection_id = r.str("connectionId")?;
            let claims = r.claims()?;
            let (headers, query_string) = if len >= 5 {
                (r.headers()?, r.opt_str("queryString")?)
            } else {
                (Vec::new(), None)
            };
            M::OpenConnection {
                connection_id,
                claims,
                headers,
                query_string,
                extensions: ext_if(r, 6)?,
            }
        }
        5 => {
            let connection_id = r.str("connectionId")?;
            let error_message = r.opt_str("errorMessage")?;
            let headers = if len >= 4 { r.headers()? } else { Vec::new() };
            M::CloseConnection {
                connection_id,
                error_message,
                headers,
                extensions: ext_if(r, 5)?,
            }
        }
        6 => M::ConnectionData {
            connection_id: r.str("connectionId")?,
            payload: r.bytes("payload")?,
            extensions: ext_if(r, 4)?,
        },
        7 => M::MultiConnectionData {
            connection_list: r.str_list("connectionList")?,
            payloads: r.payloads()?,
            extensions: ext_if(r, 4)?,
        },
        8 => M::UserData {
            user_id: r.str("userId")?,
            payloads: r.payloads()?,
            extensions: ext_if(r, 4)?,
        },
        9 => M::MultiUserData {
            user_list: r.str_list("userList")?,
            payloads: r.payloads()?,
            extensions: ext_if(r, 4)?,
        },
        10 => M::BroadcastData {
            excluded_list: r.str_list("excludedList")?,
            payloads: r.payloads()?,
            extensions: ext_if(r, 4)?,
        },
        11 => M::JoinGroup {
            connection_id: r.str("connectionId")?,
            group_name: r.str("groupName")?,
            extensions: ext_if(r, 4)?,
        },
        12 => M::LeaveGroup {
            connection_id: r.str("connectionId")?,
            group_name: r.opt_str("groupName")?,
            extensions: ext_if(r, 4)?,
        },
        13 => {
            let group_name = r.str("groupName")?;
            let excluded_list = r.str_list("excludedList")?;
            let payloads = r.payloads()?;
            let extensions = ext_if(r, 5)?;
            let (excluded_user_list, caller_user_id) = if len >= 7 {
                (r.str_list("excludedUserList")?, r.opt_str("callerUserId")?)
            } else {
                (Vec::new(), None)
            };
            M::GroupBroadcastData {
                group_name,
                excluded_list,
                payloads,
                extensions,
                excluded_user_list,
                caller_user_id,
            }
        }
        14 => M::MultiGroupBroadcastData {
            group_list: r.str_list("groupList")?,
            payloads: r.payloads()?,
            extensions: ext_if(r, 4)?,
        },
        15 => M::ServiceError {
            error_message: r.opt_str("errorMessage")?,
        },
        16 => M::UserJoinGroup {
            user_id: r.str("userId")?,
            group_name: r.str("groupName")?,
            extensions: ext_if(r, 4)?,
        },
        17 => M::UserLeaveGroup {
            user_id: r.str("userId")?,
            group_name: r.opt_str("groupName")?,
            extensions: ext_if(r, 4)?,
        },
        18 => M::JoinGroupWithAck {
            connection_id: r.str("connectionId")?,
            group_name: r.str("groupName")?,
            ack_id: r.i32("ackId")?,
            extensions: ext_if(r, 5)?,
        },
        19 => M::LeaveGroupWithAck {
            connection_id: r.str("connectionId")?,
            group_name: r.opt_str("groupName")?,
            ack_id: r.i32("ackId")?,
            extensions: ext_if(r, 5)?,
        },
        20 => {
            let ack_id = r.i32("ackId")?;
            let status = r.i32("status")?;
            let message = r.opt_str("message")?;
            let extensions = ext_if(r, 5)?;
            let payload = if len >= 6 {
                r.opt_bytes("payload")?
            } else {
                None
            };
            M::Ack {
                ack_id,
                status,
                message,
                extensions,
                payload,
            }
        }
        21 => M::CheckUserInGroupWithAck {
            user_id: r.str("userId")?,
            group_name: r.str("groupName")?,
            ack_id: r.i32("ackId")?,
            extensions: ext_if(r, 5)?,
        },
        22 => M::ServiceEvent {
            object_type: r.i32("type")?,
            id: r.opt_str("id")?,
            kind: r.i32("kind")?,
            message: r.opt_str("message")?,
            extensions: r.ext()?,
        },
        23 => M::CheckGroupExistenceWithAck {
            group_name: r.str("groupName")?,
            ack_id: r.i32("ackId")?,
            extensions: r.ext()?,
        },
        24 => M::CheckConnectionExistenceWithAck {
            connection_id: r.str("connectionId")?,
            ack_id: r.i32("ackId")?,
            extensions: r.ext()?,
        },
        25 => M::CheckUserExistenceWithAck {
            user_id: r.str("userId")?,
            ack_id: r.i32("ackId")?,
            extensions: r.ext()?,
        },
        26 => M::UserJoinGroupWithAck {
            user_id: r.str("userId")?,
            group_name: r.str("groupName")?,
            ack_id: r.i32("ackId")?,
            extensions: r.ext()?,
        },
        27 => M::UserLeaveGroupWithAck {
            user_id: r.str("userId")?,
            group_name: r.opt_str("groupName")?,
            ack_id: r.i32("ackId")?,
            extensions: r.ext()?,
        },
        28 => M::AccessKeyRequest {
            token: r.opt_str("token")?,
            kid: r.opt_str("kid")?,
            extensions: r.ext()?,
        },
        29 => M::AccessKeyResponse {
            kid: r.opt_str("kid")?,
            access_key: r.opt_str("accessKey")?,
            error_type: r.opt_str("errorType")?,
            error_message: r.opt_str("errorMessage")?,
            extensions: r.ext()?,
        },
        30 => M::CloseConnectionWithAck {
            connection_id: r.str("connectionId")?,
            reason: r.opt_str("reason")?,
            ack_id: r.i32("ackId")?,
            extensions: ext_if(r, 5)?,
        },
        31 => M::CloseConnectionsWithAck {
            reason: r.opt_str("reason")?,
            ack_id: r.i32("ackId")?,
            excluded_list: r.str_list("excluded")?,
            extensions: ext_if(r, 5)?,
        },
        32 => M::CloseUserConnectionsWithAck {
            user_id: r.str("userId")?,
            reason: r.opt_str("reason")?,
            ack_id: r.i32("ackId")?,
            excluded_list: r.str_list("excluded")?,
            extensions: ext_if(r, 6)?,
        },
        33 => M::CloseGroupConnectionsWithAck {
            group_name: r.str("group")?,
            reason: r.opt_str("reason")?,
            ack_id: r.i32("ackId")?,
            excluded_list: r.str_list("excluded")?,
            extensions: ext_if(r, 6)?,
        },
        34 => M::ClientInvocation {
            invocation_id: r.str("invocationId")?,
            connection_id: r.str("connectionId")?,
            caller_server_id: r.str("callerServerId")?,
            payloads: r.payloads()?,
            extensions: r.ext()?,
        },
        35 => M::ClientCompletion {
            invocation_id: r.str("invocationId")?,
            connection_id: r.str("connectionId")?,
            caller_server_id: r.str("callerServerId")?,
            protocol: r.str_or_empty("protocol")?,
            payload: r.bytes("payload")?,
            extensions: r.ext()?,
        },
        36 => M::ErrorCompletion {
            invocation_id: r.str("invocationId")?,
            connection_id: r.str("connectionId")?,
            caller_server_id: r.str("callerServerId")?,
            error: r.opt_str("error")?,
            extensions: r.ext()?,
        },
        37 => M::ServiceMapping {
            invocation_id: r.str("invocationId")?,
            connection_id: r.str("connectionId")?,
            instance_id: r.opt_str("instanceId")?,
            extensions: r.ext()?,
        },
        38 => M::ConnectionReconnect {
            connection_id: r.str("connectionId")?,
            extensions: r.ext()?,
        },
        // The SDK's reader stops after `operation` (and rejects values outside 1–2 / 1–4); the
        // writer adds the ext map, which is read here when present. Values are kept as received.
        39 => M::ConnectionFlowControl {
            connection_id: r.str("connectionId")?,
            connection_type: r.i32("connectionType")?,
            operation: r.i32("operation")?,
            extensions: ext_if(r, 5)?,
        },
        40 => M::GroupMemberQuery {
            extensions: r.ext()?,
            group_name: r.str("GroupName")?,
            ack_id: r.i32("AckId")?,
            max: r.i32("Max")?,
            continuation_token: r.opt_str("ContinuationToken")?,
        },
        // `min_len` knows exactly the types above.
        _ => return Err(invalid(format!("Unknown message type {type_id}."))),
    })
}

/// A field reader over one body; every method consumes exactly one MessagePack value.
struct Rd<'a> {
    r: Reader<'a>,
    src: Source<'a>,
}

impl<'a> Rd<'a> {
    fn i32(&mut self, field: &str) -> Result<i32> {
        self.r
            .int()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| invalid(format!("Reading '{field}' as Int32 failed.")))
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        self.r
            .int()
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| invalid(format!("Reading '{field}' as UInt64 failed.")))
    }

    fn bool(&mut self, field: &str) -> Result<bool> {
        self.r
            .bool()
            .ok_or_else(|| invalid(format!("Reading '{field}' as Boolean failed.")))
    }

    fn opt_str(&mut self, field: &str) -> Result<Option<String>> {
        self.r
            .str_or_nil()
            .map(|s| s.map(str::to_owned))
            .ok_or_else(|| invalid(format!("Reading '{field}' as String failed.")))
    }

    /// A string the SDK reads with `ReadStringNotNull`: nil is an error.
    fn str(&mut self, field: &str) -> Result<String> {
        self.opt_str(field)?
            .ok_or_else(|| invalid(format!("Reading '{field}' as Not-Null String failed.")))
    }

    /// A string the SDK reads as nullable where the model has a plain `String`: nil reads as "".
    fn str_or_empty(&mut self, field: &str) -> Result<String> {
        Ok(self.opt_str(field)?.unwrap_or_default())
    }

    /// `bin` (or old-spec `str`) bytes; nil is `None`.
    fn opt_bytes(&mut self, field: &str) -> Result<Option<Bytes>> {
        let fail = || invalid(format!("Reading '{field}' as Byte[] failed."));
        let marker = Marker::from_u8(self.r.peek().ok_or_else(fail)?);
        if marker == Marker::Null {
            self.r.byte();
            return Ok(None);
        }
        self.r.byte();
        let len = match marker {
            Marker::FixStr(n) => Some(usize::from(n)),
            Marker::Bin8 | Marker::Str8 => self.r.byte().map(usize::from),
            Marker::Bin16 | Marker::Str16 => self.r.be_u16().map(usize::from),
            Marker::Bin32 | Marker::Str32 => self.r.be_u32().map(|n| n as usize),
            _ => None,
        }
        .ok_or_else(fail)?;
        let bytes = self.r.take(len).ok_or_else(fail)?;
        Ok(Some(self.src.bytes_of(bytes)))
    }

    /// Payload bytes; nil reads as empty (the SDK's `ReadBytes`).
    fn bytes(&mut self, field: &str) -> Result<Bytes> {
        Ok(self.opt_bytes(field)?.unwrap_or_default())
    }

    /// A map header; nil reads as an empty map.
    fn map_len(&mut self, field: &str) -> Result<u32> {
        if self.r.peek() == Some(0xc0) {
            self.r.byte();
            return Ok(0);
        }
        self.r
            .map_len()
            .ok_or_else(|| invalid(format!("Reading map length for '{field}' failed.")))
    }

    /// An array header; nil reads as an empty array.
    fn array_len(&mut self, field: &str) -> Result<u32> {
        if self.r.peek() == Some(0xc0) {
            self.r.byte();
            return Ok(0);
        }
        self.r
            .array_len()
            .ok_or_else(|| invalid(format!("Reading array length for '{field}' failed.")))
    }

    /// A capacity for `n` announced items of at least `min_size` bytes each that the remaining
    /// input can actually hold (a hostile count cannot make us allocate).
    fn capacity(&self, n: u32, min_size: usize) -> usize {
        (n as usize).min(self.r.remaining().len() / min_size)
    }

    fn str_list(&mut self, field: &str) -> Result<Vec<String>> {
        let n = self.array_len(field)?;
        let mut list = Vec::with_capacity(self.capacity(n, 1));
        for _ in 0..n {
            list.push(self.str(field)?);
        }
        Ok(list)
    }

    /// Claims: a map read as a sequence of (type, value) pairs. .NET's `Claim` rejects null.
    fn claims(&mut self) -> Result<Claims> {
        let n = self.map_len("claims")?;
        let mut claims = Vec::with_capacity(self.capacity(n, 2));
        for _ in 0..n {
            let claim_type = self.str("claims[].Type")?;
            let value = self.str("claims[].Value")?;
            claims.push((claim_type, value));
        }
        Ok(claims)
    }

    /// Headers: name → [values]; a nil value reads as "".
    fn headers(&mut self) -> Result<Headers> {
        let n = self.map_len("headers")?;
        let mut headers = Vec::with_capacity(self.capacity(n, 2));
        for _ in 0..n {
            let name = self.str("headers[].key")?;
            let count = self.array_len("headers[].value.length")?;
            let mut values = Vec::with_capacity(self.capacity(count, 1));
            for _ in 0..count {
                values.push(self.str_or_empty("headers[].value[]")?);
            }
            headers.push((name, values));
        }
        Ok(headers)
    }

    /// Payloads: protocol name → bytes, keys kept as sent.
    fn payloads(&mut self) -> Result<Payloads> {
        let n = self.map_len("payloads")?;
        let mut payloads = Vec::with_capacity(self.capacity(n, 2));
        for _ in 0..n {
            let key = self.str("payloads[].key")?;
            let value = self.bytes("payloads[].value")?;
            payloads.push((key, value));
        }
        Ok(payloads)
    }

    /// The extension map: integer keys 1–6; the values of other keys are skipped. A repeated key
    /// keeps its last value.
    fn ext(&mut self) -> Result<Extensions> {
        let n = self.map_len("extensions")?;
        let mut ext = Extensions::default();
        for _ in 0..n {
            let key = self
                .r
                .int()
                .ok_or_else(|| invalid("Reading an extension member key as Int32 failed."))?;
            match key {
                1 => ext.tracing_id = Some(self.u64("tracingId")?),
                2 => ext.ttl = Some(self.i32("ttl")?),
                3 => ext.protocol = self.opt_str("protocol")?,
                4 => ext.filter = self.opt_str("filter")?,
                5 => ext.data_message_type = Some(self.i32("dataMessageType")?),
                6 => ext.is_partial = Some(self.bool("isPartial")?),
                _ => {
                    self.r.value().ok_or_else(|| {
                        invalid(format!("Skipping extension member {key} failed."))
                    })?;
                }
            }
        }
        Ok(ext)
    }
}
