//! The negotiate exchange (`NegotiateProtocol.cs`, `docs/protocol.md#negotiate`): the server's
//! JSON response written byte for byte like .NET, the query parameters that choose the
//! negotiate version, and the client-side response parser (with the .NET client's checks and
//! texts) used by the load generator and tests.
//!
//! Pure text in, text out; the HTTP handler owns status codes, headers and id generation.

use base64::Engine as _;

use super::json::{self, ObjectError, raw_bool, raw_int, raw_str, write_json_string};

/// The highest negotiate version a server speaks (.NET answers higher requests with this).
pub const MAX_NEGOTIATE_VERSION: u32 = 1;

/// What every client throws when a negotiate response carries `ProtocolVersion` (an ASP.NET
/// SignalR, not ASP.NET Core SignalR, server).
pub const ASPNET_SIGNALR_DETECTED: &str = "Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to an ASP.NET Core SignalR Server. See https://aka.ms/signalr-core-differences for details.";

/// One entry of `availableTransports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailableTransport {
    /// `WebSockets`, `ServerSentEvents` or `LongPolling`.
    pub transport: &'static str,
    /// `Text` and/or `Binary`.
    pub transfer_formats: Vec<&'static str>,
}

impl AvailableTransport {
    /// WebSockets, Text and Binary.
    pub fn web_sockets() -> Self {
        Self {
            transport: "WebSockets",
            transfer_formats: vec!["Text", "Binary"],
        }
    }

    /// Server-Sent Events, Text only.
    pub fn server_sent_events() -> Self {
        Self {
            transport: "ServerSentEvents",
            transfer_formats: vec!["Text"],
        }
    }

    /// Long polling, Text and Binary.
    pub fn long_polling() -> Self {
        Self {
            transport: "LongPolling",
            transfer_formats: vec!["Text", "Binary"],
        }
    }

    /// The three transports in .NET's order (WebSockets only when `web_sockets` is true).
    pub fn all(web_sockets: bool) -> Vec<Self> {
        let mut list = Vec::with_capacity(3);
        if web_sockets {
            list.push(Self::web_sockets());
        }
        list.push(Self::server_sent_events());
        list.push(Self::long_polling());
        list
    }
}

/// A negotiate response as the server writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NegotiateResponse {
    /// The agreed negotiate version (0 or 1).
    pub negotiate_version: u32,
    /// The public connection id; omitted when empty (redirects).
    pub connection_id: String,
    /// The secret connection token; written only when `negotiate_version >= 1` and non-empty.
    pub connection_token: Option<String>,
    /// Written (as `true`) only when both sides agreed on stateful reconnect.
    pub use_stateful_reconnect: bool,
    /// The transports the client may use, in order of preference.
    pub available_transports: Vec<AvailableTransport>,
    /// Redirect: where the client negotiates next.
    pub url: Option<String>,
    /// Redirect: the bearer token for the redirect target.
    pub access_token: Option<String>,
    /// A negotiate failure; when non-empty nothing else is written.
    pub error: Option<String>,
}

impl NegotiateResponse {
    /// A redirect response (`url` + optional `accessToken`; .NET also writes
    /// `"negotiateVersion":0` and an empty transport list, which clients ignore).
    pub fn redirect(url: impl Into<String>, access_token: Option<String>) -> Self {
        Self {
            url: Some(url.into()),
            access_token,
            ..Self::default()
        }
    }

    /// The JSON body, byte for byte as .NET's `NegotiateProtocol.WriteResponse` writes it
    /// (property order: `docs/protocol.md#negotiate`).
    pub fn to_json(&self) -> String {
        write_response(&Fields {
            negotiate_version: i64::from(self.negotiate_version),
            connection_id: Some(&self.connection_id),
            connection_token: self.connection_token.as_deref(),
            use_stateful_reconnect: self.use_stateful_reconnect,
            url: self.url.as_deref(),
            access_token: self.access_token.as_deref(),
            error: self.error.as_deref(),
            transports: self
                .available_transports
                .iter()
                .map(|t| (Some(t.transport), t.transfer_formats.clone()))
                .collect(),
        })
    }
}

/// The body of a negotiate failure: `{"error":"<text>"}` (sent with HTTP 200; clients throw the
/// text).
pub fn error_response(error: &str) -> String {
    let mut out = Vec::with_capacity(error.len() + 12);
    out.extend_from_slice(b"{\"error\":");
    write_json_string(error, &mut out);
    out.push(b'}');
    into_string(out)
}

/// The agreed negotiate version for the request's `negotiateVersion` query value (.NET
/// `HttpConnectionDispatcher`): missing → 0, not an integer or below 0 → the .NET error text (to be
/// sent with [`error_response`]), above 1 → 1.
pub fn negotiate_version_from_query(raw: Option<&str>) -> Result<u32, String> {
    let Some(raw) = raw else {
        return Ok(0);
    };
    let Ok(requested) = raw.trim().parse::<i32>() else {
        return Err(format!(
            "The client requested an invalid protocol version '{raw}'"
        ));
    };
    if requested < 0 {
        return Err(format!(
            "The client requested version '{requested}', but the server does not support this version."
        ));
    }
    Ok((requested as u32).min(MAX_NEGOTIATE_VERSION))
}

/// Whether the `useStatefulReconnect` query value asks for stateful reconnect (.NET
/// `bool.TryParse`: `true` in any case, surrounding whitespace allowed).
pub fn stateful_reconnect_from_query(raw: Option<&str>) -> bool {
    raw.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Formats 16 random bytes as a connection id or token the way .NET does: base64url without
/// padding (22 characters, safe to put in a URL unencoded).
pub fn format_connection_id(random: &[u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
}

/// One `availableTransports` entry as a client reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedTransport {
    /// The transport name; `None` is written as `null` (the parser never produces it).
    pub transport: Option<String>,
    /// The transfer formats.
    pub transfer_formats: Vec<String>,
}

/// A negotiate response as a client reads it (.NET `NegotiationResponse`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedNegotiateResponse {
    /// `negotiateVersion` (0 when absent or null).
    pub negotiate_version: i32,
    /// `connectionId`.
    pub connection_id: Option<String>,
    /// `connectionToken`.
    pub connection_token: Option<String>,
    /// `useStatefulReconnect`.
    pub use_stateful_reconnect: bool,
    /// `availableTransports` (`None` when absent).
    pub available_transports: Option<Vec<ParsedTransport>>,
    /// Redirect `url`.
    pub url: Option<String>,
    /// Redirect `accessToken`.
    pub access_token: Option<String>,
    /// `error`.
    pub error: Option<String>,
}

impl ParsedNegotiateResponse {
    /// The value a client sends as `id=`: the token for version ≥ 1, the connection id for
    /// version 0 (what JS, .NET and Java do).
    pub fn connect_id(&self) -> Option<&str> {
        if self.negotiate_version >= 1 {
            self.connection_token.as_deref()
        } else {
            self.connection_id.as_deref()
        }
    }

    /// Writes this response back out with the .NET writer's rules (see
    /// [`NegotiateResponse::to_json`]); a `None` transport name is written as `null`, as .NET does.
    pub fn to_json(&self) -> String {
        write_response(&Fields {
            negotiate_version: i64::from(self.negotiate_version),
            connection_id: self.connection_id.as_deref(),
            connection_token: self.connection_token.as_deref(),
            use_stateful_reconnect: self.use_stateful_reconnect,
            url: self.url.as_deref(),
            access_token: self.access_token.as_deref(),
            error: self.error.as_deref(),
            transports: self
                .available_transports
                .iter()
                .flatten()
                .map(|t| {
                    (
                        t.transport.as_deref(),
                        t.transfer_formats.iter().map(String::as_str).collect(),
                    )
                })
                .collect(),
        })
    }
}

/// Client side: parses a negotiate response with the .NET client's rules and error texts
/// (`NegotiateProtocol.ParseResponse`): unknown properties skipped, duplicate keys → last wins,
/// escapes honoured, `ProtocolVersion` → [`ASPNET_SIGNALR_DETECTED`], and unless the response is a
/// redirect (`url`) or an `error`, `connectionId`, `connectionToken` (version ≥ 1) and
/// `availableTransports` are required.
pub fn parse_negotiate_response(text: &str) -> Result<ParsedNegotiateResponse, String> {
    let mut parsed = ParsedNegotiateResponse::default();
    json::for_each_property(text.as_bytes(), |key, raw| {
        match key {
            "url" => parsed.url = Some(raw_str(raw, "url")?.into_owned()),
            "accessToken" => parsed.access_token = Some(raw_str(raw, "accessToken")?.into_owned()),
            "connectionId" => {
                parsed.connection_id = Some(raw_str(raw, "connectionId")?.into_owned())
            }
            "connectionToken" => {
                parsed.connection_token = Some(raw_str(raw, "connectionToken")?.into_owned())
            }
            "negotiateVersion" => {
                parsed.negotiate_version = raw_int(
                    raw,
                    "negotiateVersion",
                    i32::MIN.into(),
                    i32::MAX.into(),
                )?
                .unwrap_or(0) as i32;
            }
            "availableTransports" => parsed.available_transports = Some(parse_transports(raw)?),
            "error" => parsed.error = Some(raw_str(raw, "error")?.into_owned()),
            "useStatefulReconnect" => {
                parsed.use_stateful_reconnect = raw_bool(raw, "useStatefulReconnect")?
            }
            "ProtocolVersion" => return Err(ASPNET_SIGNALR_DETECTED.to_owned()),
            _ => {}
        }
        Ok(())
    })
    .map_err(|err| match err {
        ObjectError::NotAnObject(token) => json::not_an_object_text(token),
        ObjectError::Syntax => "Error reading JSON.".to_owned(),
        ObjectError::Property(text) => text,
    })?;
    if parsed.url.is_none() && parsed.error.is_none() {
        if parsed.connection_id.is_none() {
            return Err("Missing required property 'connectionId'.".to_owned());
        }
        if parsed.negotiate_version > 0 && parsed.connection_token.is_none() {
            return Err("Missing required property 'connectionToken'.".to_owned());
        }
        if parsed.available_transports.is_none() {
            return Err("Missing required property 'availableTransports'.".to_owned());
        }
    }
    Ok(parsed)
}

/// The .NET name of a value's token.
fn token_name(raw: &serde_json::value::RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "Object",
        Some(b'[') => "Array",
        Some(b'"') => "String",
        Some(b't') => "True",
        Some(b'f') => "False",
        Some(b'n') => "Null",
        _ => "Number",
    }
}

fn expect_array(
    raw: &serde_json::value::RawValue,
) -> Result<Vec<&serde_json::value::RawValue>, String> {
    if !raw.get().starts_with('[') {
        return Err(format!(
            "Unexpected JSON Token Type '{}'. Expected a JSON Array.",
            token_name(raw)
        ));
    }
    serde_json::from_str(raw.get()).map_err(|_| "Error reading JSON.".to_owned())
}

fn parse_transports(raw: &serde_json::value::RawValue) -> Result<Vec<ParsedTransport>, String> {
    let mut transports = Vec::new();
    // Entries that are not objects are skipped, as .NET does.
    for entry in expect_array(raw)?
        .into_iter()
        .filter(|e| e.get().starts_with('{'))
    {
        let mut transport = None;
        let mut formats = None;
        json::for_each_property(entry.get().as_bytes(), |key, raw| {
            match key {
                "transport" => transport = Some(raw_str(raw, "transport")?.into_owned()),
                "transferFormats" => {
                    let list = expect_array(raw)?
                        .into_iter()
                        .map(|f| {
                            if f.get().starts_with('"') {
                                raw_str(f, "transferFormats").map(|s| s.into_owned())
                            } else {
                                Err(format!(
                                    "Unexpected token '{}' when reading transfer formats JSON.",
                                    token_name(f)
                                ))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    formats = Some(list);
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(|err| match err {
            ObjectError::Property(text) => text,
            _ => "Error reading JSON.".to_owned(),
        })?;
        let Some(transport) = transport else {
            return Err("Missing required property 'transport'.".to_owned());
        };
        let Some(transfer_formats) = formats else {
            return Err("Missing required property 'transferFormats'.".to_owned());
        };
        transports.push(ParsedTransport {
            transport: Some(transport),
            transfer_formats,
        });
    }
    Ok(transports)
}

/// Everything the writer needs, borrowed from either response struct.
struct Fields<'a> {
    negotiate_version: i64,
    connection_id: Option<&'a str>,
    connection_token: Option<&'a str>,
    use_stateful_reconnect: bool,
    url: Option<&'a str>,
    access_token: Option<&'a str>,
    error: Option<&'a str>,
    transports: Vec<(Option<&'a str>, Vec<&'a str>)>,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// .NET `NegotiateProtocol.WriteResponse`.
fn write_response(f: &Fields<'_>) -> String {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    if let Some(error) = non_empty(f.error) {
        out.extend_from_slice(b"\"error\":");
        write_json_string(error, &mut out);
        out.push(b'}');
        return into_string(out);
    }
    if f.use_stateful_reconnect {
        out.extend_from_slice(b"\"useStatefulReconnect\":true,");
    }
    out.extend_from_slice(b"\"negotiateVersion\":");
    json::write_i64(f.negotiate_version, &mut out);
    let mut string_property = |name: &str, value: Option<&str>| {
        if let Some(value) = non_empty(value) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_string(value, &mut out);
        }
    };
    string_property("url", f.url);
    string_property("accessToken", f.access_token);
    string_property("connectionId", f.connection_id);
    if f.negotiate_version > 0 {
        string_property("connectionToken", f.connection_token);
    }
    out.extend_from_slice(b",\"availableTransports\":[");
    for (i, (transport, formats)) in f.transports.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"transport\":");
        match transport {
            Some(name) => write_json_string(name, &mut out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"transferFormats\":[");
        for (j, format) in formats.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_json_string(format, &mut out);
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
    into_string(out)
}

/// The writers only ever append valid UTF-8 (escaped `&str`s and ASCII).
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_response_matches_the_spec_example() {
        let response = NegotiateResponse {
            negotiate_version: 1,
            connection_id: "b2JxQ0pXRm5IRVN0bDFnVg".into(),
            connection_token: Some("Wkx0cVd4VkVZdU1YcTNqcg".into()),
            available_transports: AvailableTransport::all(true),
            ..NegotiateResponse::default()
        };
        assert_eq!(
            response.to_json(),
            r#"{"negotiateVersion":1,"connectionId":"b2JxQ0pXRm5IRVN0bDFnVg","connectionToken":"Wkx0cVd4VkVZdU1YcTNqcg","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#
        );
        let parsed = parse_negotiate_response(&response.to_json()).unwrap();
        assert_eq!(parsed.connect_id(), Some("Wkx0cVd4VkVZdU1YcTNqcg"));
        assert_eq!(parsed.to_json(), response.to_json());
    }

    #[test]
    fn stateful_redirect_and_error_shapes() {
        let mut response = NegotiateResponse {
            negotiate_version: 0,
            connection_id: "abc".into(),
            connection_token: Some("secret".into()),
            use_stateful_reconnect: true,
            ..NegotiateResponse::default()
        };
        assert_eq!(
            response.to_json(),
            r#"{"useStatefulReconnect":true,"negotiateVersion":0,"connectionId":"abc","availableTransports":[]}"#
        );
        response.error = Some("nope".into());
        assert_eq!(response.to_json(), r#"{"error":"nope"}"#);
        let redirect =
            NegotiateResponse::redirect("https://svc/client/?hub=chat&x=1", Some("jwt".into()));
        assert_eq!(
            redirect.to_json(),
            r#"{"negotiateVersion":0,"url":"https://svc/client/?hub=chat&x=1","accessToken":"jwt","availableTransports":[]}"#
        );
        assert_eq!(error_response("a\"b"), r#"{"error":"a\"b"}"#);
    }

    #[test]
    fn query_values() {
        assert_eq!(negotiate_version_from_query(None), Ok(0));
        assert_eq!(negotiate_version_from_query(Some("1")), Ok(1));
        assert_eq!(negotiate_version_from_query(Some("7")), Ok(1));
        assert_eq!(
            negotiate_version_from_query(Some("Invalid")),
            Err("The client requested an invalid protocol version 'Invalid'".to_owned())
        );
        assert_eq!(
            negotiate_version_from_query(Some("-1")),
            Err(
                "The client requested version '-1', but the server does not support this version."
                    .to_owned()
            )
        );
        assert!(stateful_reconnect_from_query(Some("True")));
        assert!(!stateful_reconnect_from_query(Some("1")));
        assert!(!stateful_reconnect_from_query(None));
        assert_eq!(format_connection_id(&[0xff; 16]).len(), 22);
    }
}
