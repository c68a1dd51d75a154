//! An account's data plane, served at its `properties.endpoint`: who is calling (a key, a token of
//! the account's token service, an Entra token), the door with the account's locks
//! (`disableLocalAuth`, `networkAcls`, `publicNetworkAccess`), and errors in the Cognitive Services
//! format.
//!
//! The token service (`POST /sts/v1.0/issueToken`) is here; the Speech and Document Intelligence
//! APIs arrive with their issues. A path the account does not serve is answered, once the caller is
//! authenticated, as Azure answers it.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_authz::{Action, Denial, DenialKind, ResourceGuard};
use byos_core::{ApiError, AuthMethod, Caller, NetworkOrigin, Scope};
use byos_http::Failure;

use crate::{CognitiveService, LiveAccount};

/// The audience of the tokens the account's token service issues.
const STS_AUDIENCE: &str = "urn:ms.cognitiveservices";
/// Entra token audiences the data plane accepts.
const ENTRA_AUDIENCES: [&str; 2] = ["https://cognitiveservices.azure.com", "https://cognitiveservices.azure.com/"];
/// An issued token lives 10 minutes, as Azure's.
const STS_LIFETIME_SECS: i64 = 600;
const KEY_HEADER: &str = "ocp-apim-subscription-key";
/// The resource types `bypass: AzureServices` admits to an AI account (none yet: no byos service
/// calls another's account).
const TRUSTED_SERVICES: &[&str] = &[];
/// What a key holder does on the account, for the door: a key grants the whole account, and the
/// door applies the account's locks (disableLocalAuth, firewall) to it.
const KEY_ACCESS: Action = Action::data("Microsoft.CognitiveServices/accounts/keyAccess/action");

#[derive(Clone)]
pub(crate) struct Plane {
    pub(crate) service: Arc<CognitiveService>,
    /// The account's lowercased id.
    account: String,
}

/// The router of one account's listener.
pub fn router(service: Arc<CognitiveService>, account: String) -> Router {
    Router::new()
        .route("/sts/v1.0/issueToken", axum::routing::post(issue_token))
        .route("/sts/v1.0/issuetoken", axum::routing::post(issue_token))
        .route("/artifacts/{container}/{*path}", axum::routing::get(artifact))
        .merge(crate::speech_http::routes())
        .merge(crate::documents_http::routes())
        .fallback(not_served)
        .with_state(Plane { service, account })
}

impl Plane {
    /// The account this listener serves, while it exists.
    fn account(&self) -> Result<Arc<LiveAccount>, ApiError> {
        self.service.account(&self.account).ok_or_else(not_found)
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("404", "Resource not found")
}

fn unauthorized(message: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(401, "401", message).with_header("x-byos-denial", why.to_string())
}

const INVALID_KEY: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";

/// Who calls: one of the account's keys (`Ocp-Apim-Subscription-Key`), a token its token service
/// issued (`Authorization: Bearer`, for this account only), or an Entra token for Cognitive Services.
/// Keys and issued tokens make a key holder; what any caller may do is the door's decision.
fn authenticate(
    service: &CognitiveService,
    account: &LiveAccount,
    headers: &HeaderMap,
    origin: NetworkOrigin,
) -> Result<Caller, ApiError> {
    // The Speech SDK sends an empty key header beside a token (and an empty bearer beside a key):
    // an empty credential is no credential.
    let key = headers.get(KEY_HEADER).map(|k| k.to_str().unwrap_or_default().trim()).filter(|k| !k.is_empty());
    if let Some(key) = key {
        let matches = (0..2).any(|i| byos_crypto::constant_time_eq(key.as_bytes(), account.keys.key(i).as_bytes()));
        return match matches {
            true => Ok(Caller::shared_key(origin)),
            false => Err(unauthorized(INVALID_KEY, "the subscription key is not one of this account's keys")),
        };
    }
    let Some(token) = byos_http::bearer_token(headers).filter(|t| !t.is_empty()) else {
        return Err(unauthorized(
            "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
            "the request carries no key and no token",
        ));
    };
    // The Speech SDK's form of an Entra token for a resource: `aad#{resource id}#{token}`.
    let token = match token.strip_prefix("aad#").and_then(|rest| rest.rsplit_once('#')) {
        Some((resource, _)) if !resource.eq_ignore_ascii_case(&account.id) => {
            return Err(unauthorized("Access denied due to invalid token.", "the token names another resource"));
        }
        Some((_, entra)) => entra,
        None => token,
    };
    let tokens = service.directory.tokens();
    match tokens.verify_resource_token(token, STS_AUDIENCE, byos_core::time::unix_now()) {
        Ok(resource) if resource.eq_ignore_ascii_case(&account.id) => return Ok(Caller::shared_key(origin)),
        Ok(_) => return Err(unauthorized(INVALID_KEY, "the token was issued for another account")),
        Err(byos_identity::TokenError::Malformed) => {}
        Err(e) => return Err(unauthorized("Access denied due to invalid token.", e)),
    }
    service
        .directory
        .authenticate(token, &ENTRA_AUDIENCES, origin)
        .map_err(|e| unauthorized("Access denied due to invalid token.", e))
}

/// The account's locks, as the door enforces them.
fn guard(account: &LiveAccount) -> ResourceGuard {
    let settings = &account.settings;
    let acls = settings.network_acls.clone().unwrap_or_default();
    ResourceGuard {
        public_network_disabled: settings.public_network_disabled,
        firewall: acls.firewall(settings.public_network_disabled, TRUSTED_SERVICES),
        allow_key_based: !settings.disable_local_auth,
        allow_public_access: false,
        anonymous_permits: Vec::new(),
        policy_permits: None,
    }
}

/// Asks the door whether `caller` may perform `action` on `account`.
fn admit(service: &CognitiveService, account: &LiveAccount, caller: &Caller, action: &Action) -> Result<(), ApiError> {
    let scope = Scope::parse(&account.id).map_err(|_| ApiError::internal())?;
    match service.door.authorize_access(caller, action, &scope, Some(&guard(account))) {
        Ok(_) => Ok(()),
        Err(denial) => Err(denial_error(&denial)),
    }
}

/// A refusal in the Cognitive Services format. The full explanation goes to the log always, and to
/// an authenticated principal in the answer; anyone else learns only which check refused (F20).
fn denial_error(denial: &Denial) -> ApiError {
    tracing::info!(explanation = %denial.explanation(), "AI-services data-plane request refused");
    let error = match denial.kind {
        DenialKind::Network => ApiError::new(403, "403", "Access denied due to Virtual Network/Firewall rules."),
        DenialKind::KeyBasedNotPermitted => {
            ApiError::new(403, "AuthenticationTypeDisabled", "Key based authentication is disabled for this resource.")
        }
        _ => ApiError::new(
            401,
            "PermissionDenied",
            format!("The principal lacks the required data action {} to perform this operation.", denial.action.name),
        ),
    };
    let error = error.with_header("x-byos-denial", format!("{:?}", denial.kind));
    match denial.caller.auth() {
        AuthMethod::BearerToken => error.with_explanation(denial.explanation()),
        _ => error,
    }
}

fn render(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| Failure::from(e).into_response())
}

/// The account a request addresses, once its caller is authenticated and admitted by the door for
/// `action` (a key holder for the whole account; an Entra principal by its data actions), with the
/// account's locks applied.
pub(crate) fn admitted(
    plane: &Plane,
    extensions: &Extensions,
    headers: &HeaderMap,
    action: &Action,
) -> Result<Arc<LiveAccount>, ApiError> {
    let account = plane.account()?;
    let caller = authenticate(&plane.service, &account, headers, byos_http::origin_of(extensions))?;
    admit(&plane.service, &account, &caller, action)?;
    Ok(account)
}

/// `POST /sts/v1.0/issueToken` with a key: a 10-minute token for this account, usable instead of the
/// key (`Authorization: Bearer`), refused like a key when local authentication is disabled.
async fn issue_token(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap) -> Response {
    render((|| {
        let account = plane.account()?;
        let origin = byos_http::origin_of(&extensions);
        if headers.get(KEY_HEADER).is_none() {
            return Err(unauthorized(
                "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
                "the token service exchanges a key for a token",
            ));
        }
        let caller = authenticate(&plane.service, &account, &headers, origin)?;
        admit(&plane.service, &account, &caller, &KEY_ACCESS)?;
        let now = byos_core::time::unix_now();
        let token = plane
            .service
            .directory
            .tokens()
            .mint_resource_token(&account.id, &account.location, STS_AUDIENCE, STS_LIFETIME_SECS, now)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign an account token");
                ApiError::internal()
            })?;
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], token).into_response())
    })())
}

/// What reading a service-held artifact without a link token is, for the door (the Speech roles'
/// `SpeechServices/*/read` grant it).
const ARTIFACT_READ: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/files/read");

#[derive(serde::Deserialize)]
struct LinkQuery {
    token: Option<String>,
}

/// `GET /artifacts/{container}/{path}`: a service-held artifact, for the holder of its link token
/// or an admitted caller. A BYOS account's artifacts are in the customer's storage, not here.
async fn artifact(
    State(plane): State<Plane>,
    axum::extract::Path((container, path)): axum::extract::Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<LinkQuery>,
    extensions: Extensions,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let account = plane.account()?;
        let area = crate::artifacts::Area::of_container(&container).ok_or_else(not_found)?;
        if !account.settings.user_owned_storage.is_empty() {
            return Err(not_found());
        }
        match &query.token {
            Some(token) => {
                let url_path = byos_storage::blob::api::blob_path(&container, &path);
                if !plane.service.artifacts.link_token_valid(&account, &url_path, token) {
                    return Err(unauthorized(
                        "Access denied due to an invalid or expired link.",
                        "the link token does not open this artifact now",
                    ));
                }
            }
            None => {
                admitted(&plane, &extensions, &headers, &ARTIFACT_READ)?;
            }
        }
        let content = plane.service.artifacts.read(&account, area, &path).await.map_err(|e| e.to_api_error())?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], content).into_response())
    }
    .await;
    render(result)
}

/// A path the account does not serve: 404 once the caller is authenticated and, for a key holder,
/// admitted by the account's locks (a caller refused learns nothing about which paths exist).
async fn not_served(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap) -> Response {
    render((|| {
        let account = plane.account()?;
        let caller = authenticate(&plane.service, &account, &headers, byos_http::origin_of(&extensions))?;
        if caller.auth() == AuthMethod::SharedKey {
            admit(&plane.service, &account, &caller, &KEY_ACCESS)?;
        }
        Err(not_found())
    })())
}
