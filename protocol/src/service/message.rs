//! The messages of the Azure SignalR service protocol (`docs/protocol.md#message-catalogue`):
//! what app servers ("hub servers") and the service exchange over `/server/?hub=`.
//!
//! Field names follow the Azure SDK's C# properties (`groupName`, `excludedList`, ...) in
//! snake_case. Byte payloads are [`Bytes`] slices of the received frame, so forwarding a
//! payload never copies it. Claim and header lists keep their order and duplicates, as the SDK
//! reads maps as sequences of pairs.

use bytes::Bytes;

/// A claim: (type, value).
pub type Claims = Vec<(String, String)>;
/// HTTP headers: name → values, in order.
pub type Headers = Vec<(String, Vec<String>)>;
/// A payload map: hub protocol name (`json`, `messagepack`, ...) → a complete framed hub message.
pub type Payloads = Vec<(String, Bytes)>;

/// The extension map (integer keys 1–6), written only with its present members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// Key 1.
    pub tracing_id: Option<u64>,
    /// Key 2 (seconds; user-group membership).
    pub ttl: Option<i32>,
    /// Key 3 (`json`, `messagepack`, ...).
    pub protocol: Option<String>,
    /// Key 4 (OData filter).
    pub filter: Option<String>,
    /// Key 5 (0 Unknown, 1 Handshake, 2 Invocation, 3 Other, 4 Close).
    pub data_message_type: Option<i32>,
    /// Key 6.
    pub is_partial: Option<bool>,
}

/// HandshakeRequest `connectionType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionType {
    /// 0: carries clients.
    Default,
    /// 1: opened on the service's request; carries clients.
    OnDemand,
    /// 2: never given clients; may send.
    Weak,
    /// Any other value, kept as received.
    Other(i32),
}

impl ConnectionType {
    /// The wire value.
    pub fn code(self) -> i32 {
        match self {
            Self::Default => 0,
            Self::OnDemand => 1,
            Self::Weak => 2,
            Self::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_code(v: i32) -> Self {
        match v {
            0 => Self::Default,
            1 => Self::OnDemand,
            2 => Self::Weak,
            other => Self::Other(other),
        }
    }

    /// Whether clients may be routed over a connection of this type.
    pub fn carries_clients(self) -> bool {
        matches!(self, Self::Default | Self::OnDemand)
    }
}

/// Ack `status` values the SDK understands.
pub mod ack_status {
    /// The operation succeeded / the thing exists.
    pub const OK: i32 = 1;
    /// The thing does not exist.
    pub const NOT_FOUND: i32 = 2;
    /// Timed out.
    pub const TIMEOUT: i32 = 3;
    /// Failed.
    pub const INTERNAL_SERVER_ERROR: i32 = 4;
}

/// One service-protocol message, by type id.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields of docs/protocol.md#message-catalogue
pub enum ServiceMessage {
    /// 1, S→Svc.
    HandshakeRequest {
        version: i32,
        connection_type: ConnectionType,
        target: Option<String>,
        migration_level: i32,
        extensions: Extensions,
        allow_stateful_reconnects: bool,
    },
    /// 2, Svc→S. Success is `error_message` None or empty.
    HandshakeResponse {
        error_message: Option<String>,
        extensions: Extensions,
        connection_id: Option<String>,
    },
    /// 3, both: keep-alive or a key/value sub-protocol (`docs/protocol.md#ping-sub-protocol`).
    Ping { messages: Vec<String> },
    /// 4, Svc→S.
    OpenConnection {
        connection_id: String,
        claims: Claims,
        headers: Headers,
        query_string: Option<String>,
        extensions: Extensions,
    },
    /// 5, both.
    CloseConnection {
        connection_id: String,
        error_message: Option<String>,
        headers: Headers,
        extensions: Extensions,
    },
    /// 6, both.
    ConnectionData {
        connection_id: String,
        payload: Bytes,
        extensions: Extensions,
    },
    /// 7, S→Svc.
    MultiConnectionData {
        connection_list: Vec<String>,
        payloads: Payloads,
        extensions: Extensions,
    },
    /// 8, S→Svc.
    UserData {
        user_id: String,
        payloads: Payloads,
        extensions: Extensions,
    },
    /// 9, S→Svc.
    MultiUserData {
        user_list: Vec<String>,
        payloads: Payloads,
        extensions: Extensions,
    },
    /// 10, S→Svc.
    BroadcastData {
        excluded_list: Vec<String>,
        payloads: Payloads,
        extensions: Extensions,
    },
    /// 11, S→Svc.
    JoinGroup {
        connection_id: String,
        group_name: String,
        extensions: Extensions,
    },
    /// 12, S→Svc.
    LeaveGroup {
        connection_id: String,
        group_name: Option<String>,
        extensions: Extensions,
    },
    /// 13, S→Svc.
    GroupBroadcastData {
        group_name: String,
        excluded_list: Vec<String>,
        payloads: Payloads,
        extensions: Extensions,
        excluded_user_list: Vec<String>,
        caller_user_id: Option<String>,
    },
    /// 14, S→Svc.
    MultiGroupBroadcastData {
        group_list: Vec<String>,
        payloads: Payloads,
        extensions: Extensions,
    },
    /// 15, Svc→S.
    ServiceError { error_message: Option<String> },
    /// 16, S→Svc.
    UserJoinGroup {
        user_id: String,
        group_name: String,
        extensions: Extensions,
    },
    /// 17, S→Svc. `group_name` None = every group.
    UserLeaveGroup {
        user_id: String,
        group_name: Option<String>,
        extensions: Extensions,
    },
    /// 18, S→Svc.
    JoinGroupWithAck {
        connection_id: String,
        group_name: String,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 19, S→Svc. `group_name` None = every group.
    LeaveGroupWithAck {
        connection_id: String,
        group_name: Option<String>,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 20, Svc→S.
    Ack {
        ack_id: i32,
        status: i32,
        message: Option<String>,
        extensions: Extensions,
        payload: Option<Bytes>,
    },
    /// 21, S→Svc.
    CheckUserInGroupWithAck {
        user_id: String,
        group_name: String,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 22, Svc→S.
    ServiceEvent {
        object_type: i32,
        id: Option<String>,
        kind: i32,
        message: Option<String>,
        extensions: Extensions,
    },
    /// 23, S→Svc.
    CheckGroupExistenceWithAck {
        group_name: String,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 24, S→Svc.
    CheckConnectionExistenceWithAck {
        connection_id: String,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 25, S→Svc.
    CheckUserExistenceWithAck {
        user_id: String,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 26, S→Svc.
    UserJoinGroupWithAck {
        user_id: String,
        group_name: String,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 27, S→Svc. `group_name` None = every group.
    UserLeaveGroupWithAck {
        user_id: String,
        group_name: Option<String>,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 28, S→Svc.
    AccessKeyRequest {
        token: Option<String>,
        kid: Option<String>,
        extensions: Extensions,
    },
    /// 29, Svc→S.
    AccessKeyResponse {
        kid: Option<String>,
        access_key: Option<String>,
        error_type: Option<String>,
        error_message: Option<String>,
        extensions: Extensions,
    },
    /// 30, S→Svc (obsolete).
    CloseConnectionWithAck {
        connection_id: String,
        reason: Option<String>,
        ack_id: i32,
        extensions: Extensions,
    },
    /// 31, S→Svc (obsolete).
    CloseConnectionsWithAck {
        reason: Option<String>,
        ack_id: i32,
        excluded_list: Vec<String>,
        extensions: Extensions,
    },
    /// 32, S→Svc.
    CloseUserConnectionsWithAck {
        user_id: String,
        reason: Option<String>,
        ack_id: i32,
        excluded_list: Vec<String>,
        extensions: Extensions,
    },
    /// 33, S→Svc.
    CloseGroupConnectionsWithAck {
        group_name: String,
        reason: Option<String>,
        ack_id: i32,
        excluded_list: Vec<String>,
        extensions: Extensions,
    },
    /// 34, S→Svc (and Svc→router server).
    ClientInvocation {
        invocation_id: String,
        connection_id: String,
        caller_server_id: String,
        payloads: Payloads,
        extensions: Extensions,
    },
    /// 35, S→Svc and Svc→caller server.
    ClientCompletion {
        invocation_id: String,
        connection_id: String,
        caller_server_id: String,
        protocol: String,
        payload: Bytes,
        extensions: Extensions,
    },
    /// 36, both.
    ErrorCompletion {
        invocation_id: String,
        connection_id: String,
        caller_server_id: String,
        error: Option<String>,
        extensions: Extensions,
    },
    /// 37, Svc→S.
    ServiceMapping {
        invocation_id: String,
        connection_id: String,
        instance_id: Option<String>,
        extensions: Extensions,
    },
    /// 38, Svc→S (inferred).
    ConnectionReconnect {
        connection_id: String,
        extensions: Extensions,
    },
    /// 39, both.
    ConnectionFlowControl {
        connection_id: String,
        connection_type: i32,
        operation: i32,
        extensions: Extensions,
    },
    /// 40, S→Svc (extensions come first on the wire).
    GroupMemberQuery {
        extensions: Extensions,
        group_name: String,
        ack_id: i32,
        max: i32,
        continuation_token: Option<String>,
    },
}

impl Extensions {
    /// Whether no member is present (written as an empty map, `80`).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// How many members are present (the map's entry count on the wire).
    pub fn len(&self) -> usize {
        usize::from(self.tracing_id.is_some())
            + usize::from(self.ttl.is_some())
            + usize::from(self.protocol.is_some())
            + usize::from(self.filter.is_some())
            + usize::from(self.data_message_type.is_some())
            + usize::from(self.is_partial.is_some())
    }
}

impl ServiceMessage {
    /// The wire type id (1–40).
    pub fn type_id(&self) -> u8 {
        match self {
            Self::HandshakeRequest { .. } => 1,
            Self::HandshakeResponse { .. } => 2,
            Self::Ping { .. } => 3,
            Self::OpenConnection { .. } => 4,
            Self::CloseConnection { .. } => 5,
            Self::ConnectionData { .. } => 6,
            Self::MultiConnectionData { .. } => 7,
            Self::UserData { .. } => 8,
            Self::MultiUserData { .. } => 9,
            Self::BroadcastData { .. } => 10,
            Self::JoinGroup { .. } => 11,
            Self::LeaveGroup { .. } => 12,
            Self::GroupBroadcastData { .. } => 13,
            Self::MultiGroupBroadcastData { .. } => 14,
            Self::ServiceError { .. } => 15,
            Self::UserJoinGroup { .. } => 16,
            Self::UserLeaveGroup { .. } => 17,
            Self::JoinGroupWithAck { .. } => 18,
            Self::LeaveGroupWithAck { .. } => 19,
            Self::Ack { .. } => 20,
            Self::CheckUserInGroupWithAck { .. } => 21,
            Self::ServiceEvent { .. } => 22,
            Self::CheckGroupExistenceWithAck { .. } => 23,
            Self::CheckConnectionExistenceWithAck { .. } => 24,
            Self::CheckUserExistenceWithAck { .. } => 25,
            Self::UserJoinGroupWithAck { .. } => 26,
            Self::UserLeaveGroupWithAck { .. } => 27,
            Self::AccessKeyRequest { .. } => 28,
            Self::AccessKeyResponse { .. } => 29,
            Self::CloseConnectionWithAck { .. } => 30,
            Self::CloseConnectionsWithAck { .. } => 31,
            Self::CloseUserConnectionsWithAck { .. } => 32,
            Self::CloseGroupConnectionsWithAck { .. } => 33,
            Self::ClientInvocation { .. } => 34,
            Self::ClientCompletion { .. } => 35,
            Self::ErrorCompletion { .. } => 36,
            Self::ServiceMapping { .. } => 37,
            Self::ConnectionReconnect { .. } => 38,
            Self::ConnectionFlowControl { .. } => 39,
            Self::GroupMemberQuery { .. } => 40,
        }
    }

    /// The type's name (the variant name, as in the spec table and the vectors' `type_name`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::HandshakeRequest { .. } => "HandshakeRequest",
            Self::HandshakeResponse { .. } => "HandshakeResponse",
            Self::Ping { .. } => "Ping",
            Self::OpenConnection { .. } => "OpenConnection",
            Self::CloseConnection { .. } => "CloseConnection",
            Self::ConnectionData { .. } => "ConnectionData",
            Self::MultiConnectionData { .. } => "MultiConnectionData",
            Self::UserData { .. } => "UserData",
            Self::MultiUserData { .. } => "MultiUserData",
            Self::BroadcastData { .. } => "BroadcastData",
            Self::JoinGroup { .. } => "JoinGroup",
            Self::LeaveGroup { .. } => "LeaveGroup",
            Self::GroupBroadcastData { .. } => "GroupBroadcastData",
            Self::MultiGroupBroadcastData { .. } => "MultiGroupBroadcastData",
            Self::ServiceError { .. } => "ServiceError",
            Self::UserJoinGroup { .. } => "UserJoinGroup",
            Self::UserLeaveGroup { .. } => "UserLeaveGroup",
            Self::JoinGroupWithAck { .. } => "JoinGroupWithAck",
            Self::LeaveGroupWithAck { .. } => "LeaveGroupWithAck",
            Self::Ack { .. } => "Ack",
            Self::CheckUserInGroupWithAck { .. } => "CheckUserInGroupWithAck",
            Self::ServiceEvent { .. } => "ServiceEvent",
            Self::CheckGroupExistenceWithAck { .. } => "CheckGroupExistenceWithAck",
            Self::CheckConnectionExistenceWithAck { .. } => "CheckConnectionExistenceWithAck",
            Self::CheckUserExistenceWithAck { .. } => "CheckUserExistenceWithAck",
            Self::UserJoinGroupWithAck { .. } => "UserJoinGroupWithAck",
            Self::UserLeaveGroupWithAck { .. } => "UserLeaveGroupWithAck",
            Self::AccessKeyRequest { .. } => "AccessKeyRequest",
            Self::AccessKeyResponse { .. } => "AccessKeyResponse",
            Self::CloseConnectionWithAck { .. } => "CloseConnectionWithAck",
            Self::CloseConnectionsWithAck { .. } => "CloseConnectionsWithAck",
            Self::CloseUserConnectionsWithAck { .. } => "CloseUserConnectionsWithAck",
            Self::CloseGroupConnectionsWithAck { .. } => "CloseGroupConnectionsWithAck",
            Self::ClientInvocation { .. } => "ClientInvocation",
            Self::ClientCompletion { .. } => "ClientCompletion",
            Self::ErrorCompletion { .. } => "ErrorCompletion",
            Self::ServiceMapping { .. } => "ServiceMapping",
            Self::ConnectionReconnect { .. } => "ConnectionReconnect",
            Self::ConnectionFlowControl { .. } => "ConnectionFlowControl",
            Self::GroupMemberQuery { .. } => "GroupMemberQuery",
        }
    }

    /// The extension map, for every type that has one (all but Ping and ServiceError).
    pub fn extensions(&self) -> Option<&Extensions> {
        match self {
            Self::Ping { .. } | Self::ServiceError { .. } => None,
            Self::HandshakeRequest { extensions, .. }
            | Self::HandshakeResponse { extensions, .. }
            | Self::OpenConnection { extensions, .. }
            | Self::CloseConnection { extensions, .. }
            | Self::ConnectionData { extensions, .. }
            | Self::MultiConnectionData { extensions, .. }
            | Self::UserData { extensions, .. }
            | Self::MultiUserData { extensions, .. }
            | Self::BroadcastData { extensions, .. }
            | Self::JoinGroup { extensions, .. }
            | Self::LeaveGroup { extensions, .. }
            | Self::GroupBroadcastData { extensions, .. }
            | Self::MultiGroupBroadcastData { extensions, .. }
            | Self::UserJoinGroup { extensions, .. }
            | Self::UserLeaveGroup { extensions, .. }
            | Self::JoinGroupWithAck { extensions, .. }
            | Self::LeaveGroupWithAck { extensions, .. }
            | Self::Ack { extensions, .. }
            | Self::CheckUserInGroupWithAck { extensions, .. }
            | Self::ServiceEvent { extensions, .. }
            | Self::CheckGroupExistenceWithAck { extensions, .. }
            | Self::CheckConnectionExistenceWithAck { extensions, .. }
            | Self::CheckUserExistenceWithAck { extensions, .. }
            | Self::UserJoinGroupWithAck { extensions, .. }
            | Self::UserLeaveGroupWithAck { extensions, .. }
            | Self::AccessKeyRequest { extensions, .. }
            | Self::AccessKeyResponse { extensions, .. }
            | Self::CloseConnectionWithAck { extensions, .. }
            | Self::CloseConnectionsWithAck { extensions, .. }
            | Self::CloseUserConnectionsWithAck { extensions, .. }
            | Self::CloseGroupConnectionsWithAck { extensions, .. }
            | Self::ClientInvocation { extensions, .. }
            | Self::ClientCompletion { extensions, .. }
            | Self::ErrorCompletion { extensions, .. }
            | Self::ServiceMapping { extensions, .. }
            | Self::ConnectionReconnect { extensions, .. }
            | Self::ConnectionFlowControl { extensions, .. }
            | Self::GroupMemberQuery { extensions, .. } => Some(extensions),
        }
    }

    /// The ack id of a `*WithAck` request, GroupMemberQuery or Ack.
    pub fn ack_id(&self) -> Option<i32> {
        match self {
            Self::JoinGroupWithAck { ack_id, .. }
            | Self::LeaveGroupWithAck { ack_id, .. }
            | Self::Ack { ack_id, .. }
            | Self::CheckUserInGroupWithAck { ack_id, .. }
            | Self::CheckGroupExistenceWithAck { ack_id, .. }
            | Self::CheckConnectionExistenceWithAck { ack_id, .. }
            | Self::CheckUserExistenceWithAck { ack_id, .. }
            | Self::UserJoinGroupWithAck { ack_id, .. }
            | Self::UserLeaveGroupWithAck { ack_id, .. }
            | Self::CloseConnectionWithAck { ack_id, .. }
            | Self::CloseConnectionsWithAck { ack_id, .. }
            | Self::CloseUserConnectionsWithAck { ack_id, .. }
            | Self::CloseGroupConnectionsWithAck { ack_id, .. }
            | Self::GroupMemberQuery { ack_id, .. } => Some(*ack_id),
            _ => None,
        }
    }
}
