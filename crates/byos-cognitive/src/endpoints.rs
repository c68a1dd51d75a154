//! Custom Speech endpoints (speech to text v3.2 and 2024-11-15 `/endpoints`): a model made
//! addressable by its id (`cid=` of short-audio recognition), with audio and transcription logging.
//!
//! An endpoint's record (`cs_endpoints`) holds what the API returns. When its logging is on, each
//! recognition's audio (as the client sent it) and result are artifacts of the account in
//! `customspeech-audiologs/{endpoint id, 32 hex}/{locale}/{yyyy-mm-dd}/{HHMMSS}_{guid}.{wav|v2.json}`
//! (the seed's layout: the customer's storage for a BYOS account, else service storage under the
//! account's KEK). The logs are listed from the artifact store itself, so nothing else records them;
//! they are deleted after [`LOG_RETENTION_DAYS`] by the retention watch, with the endpoint, or on
//! request. With logging off nothing of a recognition is kept.

use std::sync::Arc;

use byos_core::ApiError;
use byos_store::{Batch, Table};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::artifacts::{Area, ArtifactError, ArtifactInfo};
use crate::datasets::{Status, speech_error};
use crate::records::{Entity, Records};
use crate::{CognitiveService, LiveAccount};

pub(crate) const ENDPOINTS: Records = Records::new(Table("cs_endpoints"), "endpoint");
/// How long endpoint logs are kept (Azure documents 30 days for logs of custom endpoints).
pub const LOG_RETENTION_DAYS: i64 = 30;
/// What the retention watch asks the door for, per log.
const DELETE_LOG: byos_authz::Action =
    byos_authz::Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/endpoints/files/delete");

/// An endpoint as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub v: u32,
    pub id: String,
    pub display_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    /// The custom model it serves (none: the base model).
    #[serde(default)]
    pub model: Option<String>,
    pub logging: bool,
    pub status: Status,
    pub created: String,
    pub last_action: String,
}

/// What a client asks for when it creates an endpoint.
pub struct NewEndpoint {
    pub display_name: String,
    pub description: Option<String>,
    pub custom_properties: Map<String, Value>,
    pub locale: String,
    pub model: Option<String>,
    pub logging: bool,
}

/// Whose logs: an endpoint's, or those of the base model of a locale (the Speech SDK's audio
/// logging without an endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOwner {
    Endpoint(String),
    Base(String),
}

/// A logged file.
#[derive(Clone, Debug)]
pub struct LogFile {
    /// `{yyyy-mm-dd}_{HHMMSS}_{guid}.{wav|v2.json}`: the path below the owner's folder, flattened.
    pub id: String,
    pub kind: &'static str,
    pub path: String,
    pub size: u64,
    pub created: String,
}

impl Entity for Endpoint {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> &str {
        &self.created
    }
}

fn now() -> String {
    byos_core::time::rfc3339_now()
}

fn store_failure(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "endpoints: metadata store failure");
    ApiError::internal().with_format(byos_core::ErrorFormat::Speech)
}

impl LogOwner {
    /// The owner's folder in `customspeech-audiologs`: its id in 32 hex digits, then the locale.
    fn folder(&self, locale: &str) -> String {
        let id = match self {
            LogOwner::Endpoint(id) => id.as_str(),
            LogOwner::Base(_) => crate::transcriptions_http::BASE_MODEL_ID,
        };
        format!("{}/{locale}/", id.replace('-', "").to_ascii_lowercase())
    }
}

/// The log file at `path` below `folder`, as the API lists it.
fn log_file(folder: &str, info: &ArtifactInfo) -> Option<LogFile> {
    let rest = info.name.strip_prefix(folder)?;
    let (date, name) = rest.split_once('/')?;
    let kind = if name.ends_with(".wav") || name.ends_with(".ogg") { "Audio" } else { "Transcription" };
    let seconds = info.last_modified / 1_000_000_000;
    let created = time::OffsetDateTime::from_unix_timestamp(seconds).map(byos_core::time::rfc3339).unwrap_or_default();
    Some(LogFile { id: format!("{date}_{name}"), kind, path: info.name.clone(), size: info.size, created })
}

/// `2023-07-06` of a log id or path segment, as a comparable date.
fn log_date(id: &str) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(id.get(..10)?, &format).ok()
}

impl CognitiveService {
    async fn put_endpoint(&self, account: &LiveAccount, e: &Endpoint) -> Result<(), ApiError> {
        ENDPOINTS.put(&self.store, account, e).await
    }

    /// The endpoint `id` of the account.
    pub async fn speech_endpoint(&self, account: &LiveAccount, id: &str) -> Result<Endpoint, ApiError> {
        ENDPOINTS.get(&self.store, account, id).await
    }

    /// Every endpoint of the account, oldest first.
    pub async fn speech_endpoints(&self, account: &LiveAccount) -> Result<Vec<Endpoint>, ApiError> {
        ENDPOINTS.list(&self.store, account).await
    }

    /// Creates an endpoint; it serves at once (the engine loads models per request).
    pub async fn create_endpoint(&self, account: &LiveAccount, new: NewEndpoint) -> Result<Endpoint, ApiError> {
        let created = now();
        let endpoint = Endpoint {
            v: 1,
            id: uuid::Uuid::new_v4().to_string(),
            display_name: new.display_name,
            description: new.description,
            custom_properties: new.custom_properties,
            locale: new.locale,
            model: new.model,
            logging: new.logging,
            status: Status::Succeeded,
            created: created.clone(),
            last_action: created,
        };
        self.put_endpoint(account, &endpoint).await?;
        Ok(endpoint)
    }

    /// Changes an endpoint (`displayName`, `description`, `customProperties`,
    /// `properties.contentLoggingEnabled`); `model` is validated by the caller.
    pub async fn update_endpoint(
        &self,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
        model: Option<Option<String>>,
    ) -> Result<Endpoint, ApiError> {
        let _serialized = self.transcription_writes.lock().await;
        let mut endpoint = self.speech_endpoint(account, id).await?;
        crate::records::apply_description(
            update,
            &mut endpoint.display_name,
            &mut endpoint.description,
            &mut endpoint.custom_properties,
        );
        if let Some(logging) = update.get("properties").and_then(|p| p.get("contentLoggingEnabled")) {
            endpoint.logging = logging
                .as_bool()
                .ok_or_else(|| speech_error(400, "InvalidRequest", "contentLoggingEnabled is true or false."))?;
        }
        if let Some(model) = model {
            endpoint.model = model;
        }
        endpoint.last_action = now();
        self.put_endpoint(account, &endpoint).await?;
        Ok(endpoint)
    }

    /// Deletes an endpoint and its logs; deleting one that does not exist is no error.
    pub async fn delete_endpoint(&self, account: &LiveAccount, id: &str) -> Result<(), ApiError> {
        let endpoint = match self.speech_endpoint(account, id).await {
            Ok(endpoint) => endpoint,
            Err(e) if e.status == 404 => return Ok(()),
            Err(e) => return Err(e),
        };
        self.delete_logs(account, &LogOwner::Endpoint(endpoint.id.clone()), &endpoint.locale, None).await?;
        ENDPOINTS.delete(&self.store, account, id).await
    }

    /// Keeps a recognition's audio and result in the logs of `owner`.
    pub async fn log_recognition(
        &self,
        account: &LiveAccount,
        owner: &LogOwner,
        locale: &str,
        audio: Bytes,
        audio_extension: &str,
        result: &Value,
    ) -> Result<(), ApiError> {
        let at = time::OffsetDateTime::now_utc();
        let format = time::macros::format_description!("[year]-[month]-[day]/[hour][minute][second]");
        let stamp = at.format(&format).map_err(store_failure)?;
        let base = format!("{}{stamp}_{}", owner.folder(locale), uuid::Uuid::new_v4());
        let content_type = if audio_extension == "ogg" { "audio/ogg" } else { "audio/wav" };
        let audio_path = format!("{base}.{audio_extension}");
        self.artifacts
            .put(account, Area::AudioLogs, &audio_path, audio, content_type)
            .await
            .map_err(|e| e.to_speech_error())?;
        let entry = json!({"AudioFileName": audio_path.rsplit('/').next(), "Timestamp": byos_core::time::rfc3339(at),
                           "RecognitionResult": result});
        let entry = Bytes::from(entry.to_string());
        self.artifacts
            .put(account, Area::AudioLogs, &format!("{base}.v2.json"), entry, "application/json")
            .await
            .map_err(|e| e.to_speech_error())?;
        Ok(())
    }

    /// The logs of `owner`, oldest first.
    pub async fn logs(&self, account: &LiveAccount, owner: &LogOwner, locale: &str) -> Result<Vec<LogFile>, ApiError> {
        let folder = owner.folder(locale);
        let listed = self.artifacts.list(account, Area::AudioLogs, &folder).await.map_err(|e| e.to_speech_error())?;
        let mut files: Vec<LogFile> = listed.iter().filter_map(|info| log_file(&folder, info)).collect();
        files.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(files)
    }

    /// The log `log_id` of `owner`.
    pub async fn log(
        &self,
        account: &LiveAccount,
        owner: &LogOwner,
        locale: &str,
        log_id: &str,
    ) -> Result<LogFile, ApiError> {
        self.logs(account, owner, locale)
            .await?
            .into_iter()
            .find(|f| f.id == log_id)
            .ok_or_else(|| speech_error(404, "NotFound", format!("The log '{log_id}' does not exist.")))
    }

    /// Deletes the logs of `owner` dated on or before `until` (all of them without it); returns how
    /// many files went.
    pub async fn delete_logs(
        &self,
        account: &LiveAccount,
        owner: &LogOwner,
        locale: &str,
        until: Option<time::Date>,
    ) -> Result<usize, ApiError> {
        let mut deleted = 0;
        for file in self.logs(account, owner, locale).await? {
            if until.is_some_and(|until| log_date(&file.id).is_none_or(|date| date > until)) {
                continue;
            }
            self.delete_log_file(account, &file).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    pub async fn delete_log_file(&self, account: &LiveAccount, file: &LogFile) -> Result<(), ApiError> {
        match self.artifacts.delete(account, Area::AudioLogs, &file.path).await {
            Ok(()) | Err(ArtifactError::NotFound) => Ok(()),
            Err(e) => Err(e.to_speech_error()),
        }
    }

    /// A link to a log file (see [`crate::artifacts::ArtifactStore::link`]).
    pub async fn log_link(
        &self,
        account: &LiveAccount,
        file: &LogFile,
        validity: std::time::Duration,
    ) -> Result<String, ApiError> {
        self.artifacts.link(account, Area::AudioLogs, &file.path, validity).await.map_err(|e| e.to_speech_error())
    }

    /// Deletes the endpoint and base-model logs older than [`LOG_RETENTION_DAYS`] at `today`, as
    /// `watch`, which the door must admit for each account; returns how many files went.
    pub async fn expire_logs(&self, watch: &byos_core::Caller, today: time::Date) -> Result<usize, ApiError> {
        let until = today - time::Duration::days(LOG_RETENTION_DAYS + 1);
        let mut owners: Vec<(String, LogOwner, String)> = Vec::new();
        for (account, endpoint) in ENDPOINTS.all::<Endpoint>(&self.store).await? {
            owners.push((account, LogOwner::Endpoint(endpoint.id), endpoint.locale));
        }
        // Every live speech account may have base-model logs (`storeAudio=true`), endpoints or not.
        for account in self.speech_account_keys() {
            for locale in crate::speech_http::LOCALES {
                owners.push((account.clone(), LogOwner::Base(locale.to_owned()), locale.to_owned()));
            }
        }
        let mut deleted = 0;
        for (account_key, owner, locale) in owners {
            // A soft-deleted account's logs wait: restored, it has them back; purged, they go with it.
            let Some(account) = self.account(&account_key) else { continue };
            let scope = byos_core::Scope::parse(&account.id).map_err(store_failure)?;
            self.door.authorize(watch, &DELETE_LOG, &scope).map_err(|denial| denial.to_api_error())?;
            // One account whose storage cannot be reached does not keep the others' logs.
            match self.delete_logs(&account, &owner, &locale, Some(until)).await {
                Ok(count) => deleted += count,
                Err(e) => {
                    tracing::warn!(account = %account.id, error = %e.message, "expired logs could not be deleted")
                }
            }
        }
        Ok(deleted)
    }

    pub(crate) async fn endpoints_purge_ops(&self, account_id: &str, batch: Batch) -> Result<Batch, ApiError> {
        ENDPOINTS.purge_ops(&self.store, account_id, batch).await
    }
}

/// Where a recognition is logged, if it is, and under which locale. An endpoint that logs is logged
/// whatever the session asks (in Azure the endpoint's setting wins); otherwise a session that asks
/// (`storeAudio=true`: the Speech SDK's `enable_audio_logging()`) is logged under its endpoint, or
/// under the base model of its `locale`.
pub fn log_owner(endpoint: Option<&Endpoint>, store_audio: bool, locale: &str) -> Option<(LogOwner, String)> {
    match endpoint {
        Some(e) if e.logging || store_audio => Some((LogOwner::Endpoint(e.id.clone()), e.locale.clone())),
        Some(_) => None,
        None => store_audio.then(|| (LogOwner::Base(locale.to_owned()), locale.to_owned())),
    }
}

/// The session's `storeAudio` query parameter: `true` (any case) asks for logging.
pub fn asks_to_store(store_audio: Option<&str>) -> bool {
    store_audio.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The parsed `endDate` of `DELETE .../files/logs?endDate=yyyy-mm-dd`.
pub fn parse_end_date(text: &str) -> Option<time::Date> {
    (text.len() == 10).then(|| log_date(text)).flatten()
}

/// The account an endpoint of the live account is used through (short audio `cid=`), checked.
pub async fn endpoint_for_recognition(
    service: &Arc<CognitiveService>,
    account: &LiveAccount,
    cid: &str,
) -> Result<Endpoint, ApiError> {
    service.speech_endpoint(account, cid).await.map_err(|e| {
        if e.status == 404 {
            speech_error(400, "InvalidArgument", format!("The endpoint '{cid}' (cid) does not exist in this account."))
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_flatten_the_seeds_layout_and_carry_their_date() {
        let folder = LogOwner::Endpoint("0f8b2c4e-1111-2222-3333-444455556666".into()).folder("en-US");
        assert_eq!(folder, "0f8b2c4e111122223333444455556666/en-US/");
        let info = ArtifactInfo {
            name: format!("{folder}2023-07-06/152339_abc.v2.json"),
            size: 12,
            etag: String::new(),
            last_modified: 1_688_657_019_000_000_000,
            content_type: None,
            metadata: Default::default(),
        };
        let file = log_file(&folder, &info).unwrap_or_else(|| panic!("a log"));
        assert_eq!((file.id.as_str(), file.kind), ("2023-07-06_152339_abc.v2.json", "Transcription"));
        assert_eq!(log_date(&file.id), parse_end_date("2023-07-06"));
        assert!(parse_end_date("2023-7-6").is_none() && parse_end_date("yesterday").is_none());
        assert!(log_file("other/", &info).is_none());
    }
}
