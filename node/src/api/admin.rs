//! `POST /v1/admin/isolate`, the testnet's hook to cut a node off from its
//! peers. It is routed only when the node runs with `--enable-admin-api`
//! (without, the path is 404 like any unknown one), and then answers only
//! a request with the node's bearer token (401 otherwise). Its JSON body is
//! required before that, as every POST's is (415, the router's `refusal`):
//! a web page the operator visits can send neither.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use gridshare_api::{ErrorCode, IsolateRequest, Isolated};

use super::{ApiError, ISOLATION_MS_MAX, Reply, json};
use crate::node::Client;

/// The secret an admin request bears (`Authorization: Bearer TOKEN`).
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token; surrounding whitespace (a file's newline) is not part of it.
    pub fn new(token: &str) -> AdminToken {
        AdminToken(token.trim().to_string())
    }

    /// Whether `presented` is the token, compared in time that does not
    /// depend on where they differ.
    fn matches(&self, presented: &str) -> bool {
        let (expected, presented) = (self.0.as_bytes(), presented.as_bytes());
        expected.len() == presented.len()
            && expected.iter().zip(presented).fold(0_u8, |difference, (a, b)| difference | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("AdminToken(..)")
    }
}

pub(super) fn route(token: AdminToken) -> MethodRouter<Client> {
    post(move |state: State<Client>, headers: HeaderMap, body: Result<Bytes, BytesRejection>| {
        isolate(state, token, headers, body)
    })
}

/// The refusal of a request without the token (401); `None` for a request
/// to serve.
fn refusal(token: &AdminToken, headers: &HeaderMap) -> Option<Response> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !presented.is_some_and(|presented| token.matches(presented)) {
        let error = ApiError::new(
            ErrorCode::Unauthorized,
            "the admin API needs `Authorization: Bearer TOKEN` with the node's admin token",
        );
        return Some(([(header::WWW_AUTHENTICATE, "Bearer")], error).into_response());
    }
    None
}

/// `POST /v1/admin/isolate` with `{"duration_ms": N}`: cuts the node off from
/// every peer for N ms (at most an hour), for testnets' disconnect faults.
async fn isolate(
    State(client): State<Client>,
    token: AdminToken,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    if let Some(refusal) = refusal(&token, &headers) {
        return Ok(refusal);
    }
    let body =
        body.map_err(|rejection| ApiError::with_status(rejection.status(), ErrorCode::BadBody, rejection))?;
    let expected = || {
        ApiError::new(ErrorCode::BadRequest, format!("expected {{\"duration_ms\": 0..={ISOLATION_MS_MAX}}}"))
    };
    let request: serde_json::Value =
        serde_json::from_slice(&body).map_err(|problem| ApiError::new(ErrorCode::BadJson, problem))?;
    let request: IsolateRequest = serde_json::from_value(request).map_err(|_| expected())?;
    if request.duration_ms > ISOLATION_MS_MAX {
        return Err(expected());
    }
    client.isolate(std::time::Duration::from_millis(request.duration_ms)).await?;
    json(&Isolated { isolated_ms: request.duration_ms })
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let token = AdminToken::new(" secret-token\n");
        assert!(token.matches("secret-token"));
        assert!(!token.matches("secret-tokeN"));
        assert!(!token.matches("secret-token "));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }

    #[test]
    fn requests_without_the_token_are_refused() {
        let token = AdminToken::new("t0k3n");
        let mut headers = HeaderMap::new();
        let status = |headers: &HeaderMap| refusal(&token, headers).map(|response| response.status());
        assert_eq!(status(&headers), Some(StatusCode::UNAUTHORIZED));
        headers.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(status(&headers), Some(StatusCode::UNAUTHORIZED));
        headers.insert(header::AUTHORIZATION, "Bearer t0k3n".parse().unwrap());
        assert_eq!(status(&headers), None);
    }
}
