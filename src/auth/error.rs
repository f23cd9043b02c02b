//! Why a credential was refused: each [`AuthError`] knows the rejection the
//! client gets (401 with a `WWW-Authenticate: Bearer` error, 403, 503) and
//! the bounded `result` label of `tidegate_auth_results_total`.

use crate::handshake::Rejection;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential in any configured source")]
    Missing,
    #[error("credential is not a well-formed token")]
    Malformed,
    #[error("no configured key matches the token's kid and algorithm")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issuer, audience or a required claim is wrong")]
    Claims,
    #[error("a claim condition failed")]
    Forbidden,
    #[error("unknown API key")]
    UnknownApiKey,
    #[error("auth service refused with status {0}")]
    Denied(u16),
    #[error("auth service unavailable")]
    Unavailable,
}

impl AuthError {
    /// What the client is told.
    pub fn rejection(self) -> Rejection {
        match self {
            AuthError::Missing => Rejection::AuthMissing,
            AuthError::Forbidden => Rejection::AuthForbidden,
            AuthError::Denied(403) => Rejection::AuthDenied { status: 403 },
            AuthError::Denied(_) => Rejection::AuthDenied { status: 401 },
            AuthError::Unavailable => Rejection::AuthUnavailable,
            _ => Rejection::AuthInvalid,
        }
    }

    /// `result` label; a fixed set.
    pub fn label(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Claims => "invalid_claims",
            AuthError::Forbidden => "forbidden",
            AuthError::UnknownApiKey => "unknown_api_key",
            AuthError::Denied(_) => "denied",
            AuthError::Unavailable => "unavailable",
        }
    }
}
