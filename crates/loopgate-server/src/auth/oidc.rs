//! Single sign-on with an OpenID Provider (docs/sso.md): the authorization
//! code flow with PKCE, `state` and `nonce`, through the `openidconnect`
//! crate. Discovery is read at the first login (a provider that is down
//! does not keep loopgate from starting) and again after an hour; the
//! provider's keys are fetched again when a token names a key loopgate has
//! not seen (key rotation). ID tokens are checked for issuer, audience,
//! expiry (a minute of leeway, on loopgate's clock), nonce and signature,
//! with asymmetric algorithms only (never `none`, never HMAC).
//!
//! The pages (`ui/sso.rs`) turn a [`SsoError`] into a page that says what
//! went wrong; the log gets the cause, never a token, code or secret.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use loopgate_core::Timestamp;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreGenderClaim,
    CoreIdTokenVerifier, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndSessionUrl, IdToken, IssuerUrl, JsonWebKeySet, LogoutRequest, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::OidcConfig;

/// The algorithms an ID token may be signed with.
const ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];
/// Clocks differ: a token is accepted this long after its `exp`.
const LEEWAY_MS: i64 = 60_000;
/// Discovery is read again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The most claim values (groups) read from a token, and their longest.
const MAX_GROUPS: usize = 1000;
const MAX_GROUP_BYTES: usize = 256;
/// How long the provider has to answer a request.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a login may take at the provider.
pub(crate) const LOGIN_TTL: Duration = Duration::from_secs(600);

type Metadata = ProviderMetadataWithLogout;

/// Every claim of the ID token beyond the standard ones (the groups claim
/// is named by configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Extra {
    #[serde(flatten)]
    claims: Map<String, Value>,
}

impl AdditionalClaims for Extra {}

type Token =
    IdToken<Extra, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// The provider as configured, its discovered metadata and keys.
pub(crate) struct Oidc {
    pub(crate) config: OidcConfig,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    after_logout: String,
    http: reqwest::Client,
    discovered: tokio::sync::Mutex<Option<(Arc<Metadata>, Timestamp)>>,
}

/// A login to send the browser to the provider with.
pub(crate) struct Authorization {
    pub(crate) url: String,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) pkce_verifier: String,
}

/// Who the provider says signed in.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) subject: String,
    pub(crate) preferred_username: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) groups: Vec<String>,
    /// The ID token as received (for `id_token_hint` at logout).
    pub(crate) raw: String,
}

/// Why a sign-in failed: each says it in a sentence for the page; the log
/// gets [`SsoError::cause`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoError {
    #[error(
        "loopgate could not reach the identity provider. Try again in a few minutes; if it goes on, tell your administrator."
    )]
    Unreachable(String),
    #[error(
        "The identity provider refused loopgate's request ({0}). Your administrator should check loopgate's client id and secret at the provider."
    )]
    Refused(String),
    #[error("The identity provider did not sign you in ({0}).")]
    Denied(String),
    #[error(
        "This sign-in is unknown, has expired or was already used. Start again from the login page."
    )]
    UnknownState,
    #[error(
        "This sign-in was started in another browser (or its cookie was lost). Start again from the login page."
    )]
    OtherBrowser,
    #[error("The identity provider's answer could not be trusted: {0}.")]
    Untrusted(&'static str, String),
    #[error(
        "Your account is in no group that loopgate gives access to. Ask your administrator to add you to one."
    )]
    Unmapped,
    #[error("This account is disabled in loopgate. Ask an admin to enable it.")]
    Disabled,
}

impl SsoError {
    /// What the operator's log says (no secrets, no tokens).
    pub(crate) fn cause(&self) -> String {
        match self {
            SsoError::Unreachable(cause) | SsoError::Refused(cause) | SsoError::Denied(cause) => {
                cause.clone()
            }
            SsoError::Untrusted(what, cause) => format!("{what}: {cause}"),
            other => other.to_string(),
        }
    }

    /// The page's status code.
    pub(crate) fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode as S;
        match self {
            SsoError::Unreachable(_) | SsoError::Refused(_) => S::BAD_GATEWAY,
            SsoError::UnknownState | SsoError::OtherBrowser => S::BAD_REQUEST,
            SsoError::Untrusted(..) | SsoError::Denied(_) => S::UNAUTHORIZED,
            SsoError::Unmapped | SsoError::Disabled => S::FORBIDDEN,
        }
    }
}

impl Oidc {
    /// The provider of `config`, answering at `{public_url}/ui/oidc/callback`.
    pub(crate) fn new(config: OidcConfig, public_url: &str) -> Result<Oidc, String> {
        let base = public_url.trim_end_matches('/');
        let redirect = RedirectUrl::new(format!("{base}/ui/oidc/callback"))
            .map_err(|e| format!("`public_url` does not make a redirect URI: {e}"))?;
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| format!("`oidc_issuer` is not a URL: {e}"))?;
        // Discovery and token requests follow no redirect (SSRF).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Oidc {
            config,
            issuer,
            redirect,
            after_logout: format!("{base}/ui/login"),
            http,
            discovered: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider's metadata, discovered at most an hour ago.
    async fn metadata(&self, now: Timestamp) -> Result<Arc<Metadata>, SsoError> {
        let mut discovered = self.discovered.lock().await;
        if let Some((metadata, at)) = discovered.as_ref()
            && now < at.plus(DISCOVERY_TTL)
        {
            return Ok(metadata.clone());
        }
        let metadata = Metadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| SsoError::Unreachable(format!("discovery: {}", chain(&e))))?;
        let metadata = Arc::new(metadata);
        *discovered = Some((metadata.clone(), now));
        Ok(metadata)
    }

    /// Fetches the provider's keys again (a token named a key we do not
    /// have): one fetch at a time.
    async fn refresh_keys(&self, stale: &Arc<Metadata>) -> Result<Arc<Metadata>, SsoError> {
        let mut discovered = self.discovered.lock().await;
        if let Some((current, _)) = discovered.as_ref()
            && !Arc::ptr_eq(current, stale)
        {
            // Someone else fetched them while we waited.
            return Ok(current.clone());
        }
        let keys = JsonWebKeySet::fetch_async(stale.jwks_uri(), &self.http)
            .await
            .map_err(|e| SsoError::Unreachable(format!("keys: {}", chain(&e))))?;
        let at = discovered
            .as_ref()
            .map_or(Timestamp::from_millis(0), |(_, at)| *at);
        let metadata = Arc::new(Metadata::clone(stale).set_jwks(keys));
        *discovered = Some((metadata.clone(), at));
        Ok(metadata)
    }

    fn client(&self, metadata: &Metadata) -> ClientOf {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Where to send the browser to sign in.
    pub(crate) async fn authorize(&self, now: Timestamp) -> Result<Authorization, SsoError> {
        let metadata = self.metadata(now).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(&metadata);
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Authorization {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the callback's code for tokens and checks the ID token.
    pub(crate) async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
        now: Timestamp,
    ) -> Result<Verified, SsoError> {
        let metadata = self.metadata(now).await?;
        let client = self.client(&metadata);
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Refused(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let response = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(answer) => {
                    let code = answer.error();
                    let cause = format!("token endpoint answered `{}`", code.as_ref());
                    match code {
                        CoreErrorResponseType::InvalidGrant => SsoError::Untrusted(
                            "the code was refused (used twice, expired, or not for this sign-in)",
                            cause,
                        ),
                        _ => SsoError::Refused(code.as_ref().to_owned()),
                    }
                }
                RequestTokenError::Request(e) => {
                    SsoError::Unreachable(format!("token endpoint: {}", chain(&e)))
                }
                other => SsoError::Refused(format!("token endpoint: {}", chain(&other))),
            })?;
        let raw = response
            .id_token()
            .ok_or_else(|| SsoError::Refused("no ID token in the answer".to_owned()))?
            .to_string();
        let token = Token::from_str(&raw)
            .map_err(|e| SsoError::Untrusted("the ID token does not parse", e.to_string()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = match self.verify(&token, &metadata, &nonce, now) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // A key we have not seen: the provider may have rotated.
                let metadata = self.refresh_keys(&metadata).await?;
                self.verify(&token, &metadata, &nonce, now)
            }
            other => other,
        }
        .map_err(untrusted)?;
        let mut groups = Vec::new();
        match claims
            .additional_claims()
            .claims
            .get(&self.config.groups_claim)
        {
            Some(Value::Array(values)) => {
                for value in values.iter().take(MAX_GROUPS) {
                    if let Some(text) = value.as_str().filter(|it| it.len() <= MAX_GROUP_BYTES) {
                        groups.push(text.to_owned());
                    }
                }
            }
            Some(Value::String(text)) if text.len() <= MAX_GROUP_BYTES => {
                groups.push(text.clone());
            }
            _ => (),
        }
        let verified_email = claims.email_verified().unwrap_or(false);
        Ok(Verified {
            subject: claims.subject().to_string(),
            preferred_username: claims.preferred_username().map(|it| it.to_string()),
            email: claims
                .email()
                .filter(|_| verified_email)
                .map(|it| it.to_string()),
            groups,
            raw,
        })
    }

    fn verify<'t>(
        &self,
        token: &'t Token,
        metadata: &Metadata,
        nonce: &Nonce,
        now: Timestamp,
    ) -> Result<&'t openidconnect::IdTokenClaims<Extra, CoreGenderClaim>, ClaimsVerificationError>
    {
        let at = now.millis() - LEEWAY_MS;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .set_allowed_algs(ALGORITHMS)
        .set_time_fn(move || {
            chrono::DateTime::from_timestamp_millis(at).unwrap_or(chrono::DateTime::UNIX_EPOCH)
        });
        token.claims(&verifier, nonce)
    }

    /// Where to send the browser at logout: the provider's end-session
    /// endpoint when it has one (RP-initiated logout), else nowhere.
    pub(crate) async fn logout_url(&self, id_token: &str, now: Timestamp) -> Option<String> {
        // The endpoint discovered at sign-in will do, however old: logging
        // out waits on no provider.
        let cached = self
            .discovered
            .lock()
            .await
            .as_ref()
            .map(|(it, _)| it.clone());
        let metadata = match cached {
            Some(metadata) => metadata,
            None => self.metadata(now).await.ok()?,
        };
        let endpoint: &EndSessionUrl = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()?;
        let mut request = LogoutRequest::from(endpoint.clone())
            .set_client_id(ClientId::new(self.config.client_id.clone()));
        if let Ok(token) = Token::from_str(id_token) {
            request = request.set_id_token_hint(&token);
        }
        if let Ok(after) = PostLogoutRedirectUrl::new(self.after_logout.clone()) {
            request = request.set_post_logout_redirect_uri(after);
        }
        Some(request.http_get_url().to_string())
    }
}

type ClientOf = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// What went wrong with a token, in words a person can act on.
fn untrusted(error: ClaimsVerificationError) -> SsoError {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    let what = match &error {
        C::Expired(_) => "the sign-in token has expired (is loopgate's clock right?)",
        C::InvalidAudience(_) => "the sign-in token is for another application",
        C::InvalidIssuer(_) => "the sign-in token is from another provider",
        C::InvalidNonce(_) => "the sign-in token belongs to another sign-in",
        C::SignatureVerification(S::NoMatchingKey) => {
            "the sign-in token is signed by a key the provider does not publish"
        }
        C::SignatureVerification(S::NoSignature) => "the sign-in token is not signed",
        C::SignatureVerification(S::DisallowedAlg(_) | S::UnsupportedAlg(_)) => {
            "the sign-in token is signed with an algorithm loopgate does not accept"
        }
        C::SignatureVerification(_) => "the sign-in token's signature does not verify",
        _ => "the sign-in token is not valid",
    };
    SsoError::Untrusted(what, error.to_string())
}

/// An error and its sources, in one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
