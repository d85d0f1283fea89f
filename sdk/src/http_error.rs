//! Plain words for an HTTP request that got no answer: "connection refused at
//! http://127.0.0.1:8080" rather than reqwest's "error sending request for url (…)".

/// What went wrong with a request that got no HTTP answer, in plain words, naming where it went
/// (scheme, host and port; never the path or query, which may hold a token).
pub fn describe(error: &reqwest::Error) -> String {
    let at = error
        .url()
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_else(|| "the broker".to_owned());
    let innermost = innermost(error);
    if let Some(io) = io_error(error) {
        use std::io::ErrorKind;
        let what = match io.kind() {
            ErrorKind::ConnectionRefused => Some(format!(
                "connection refused at {at}: is the broker running and listening there?"
            )),
            ErrorKind::ConnectionReset => Some(format!("the connection to {at} was reset")),
            ErrorKind::ConnectionAborted => Some(format!("the connection to {at} was aborted")),
            ErrorKind::TimedOut => Some(format!("no answer from {at} in time")),
            ErrorKind::AddrNotAvailable | ErrorKind::HostUnreachable => {
                Some(format!("{at} cannot be reached: {io}"))
            }
            ErrorKind::NetworkUnreachable => Some(format!(
                "{at} cannot be reached: the network is unreachable"
            )),
            _ => None,
        };
        if let Some(what) = what {
            return what;
        }
    }
    if error.is_timeout() {
        return format!("no answer from {at} in time");
    }
    let chain = chain(error);
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        return format!("cannot resolve the host of {at}: {innermost}");
    }
    if chain.contains("certificate") || chain.contains("tls") || chain.contains("TLS") {
        return format!("TLS with {at} failed: {innermost}");
    }
    if error.is_connect() {
        return format!("cannot connect to {at}: {innermost}");
    }
    format!("the request to {at} failed: {innermost}")
}

/// The first `std::io::Error` among the error's sources.
fn io_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

/// The deepest source's text: the cause itself, without the layers' wrapping.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last: &dyn std::error::Error = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Every layer's text, `: `-separated.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    async fn error_for(url: &str) -> reqwest::Error {
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .expect_err("no answer")
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address_and_not_the_path() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = error_for(&format!(
            "http://127.0.0.1:{port}/admin/trace?access_token=secret"
        ))
        .await;
        let text = describe(&error);
        assert_eq!(
            text,
            format!(
                "connection refused at http://127.0.0.1:{port}: is the broker running and \
                 listening there?"
            )
        );
    }

    #[tokio::test]
    async fn an_unknown_host_says_it_cannot_be_resolved() {
        let error = error_for("http://no-such-host.invalid:8080/").await;
        let text = describe(&error);
        assert!(
            text.starts_with("cannot resolve the host of http://no-such-host.invalid:8080"),
            "{text}"
        );
    }
}
