//! Time to live: a finished batch transcription (`timeToLive`) of a BYOS account, or batch synthesis
//! (`timeToLiveInHours`), is kept until that much time has passed since it finished, then deleted
//! with its result files in the customer's storage; endpoint and base-model logs go after 30 days. Only the
//! retention watch may delete them.

use anyhow::Context;
use byos_cognitive::LiveAccount;
use byos_cognitive::artifacts::Area;
use byos_cognitive::datasets::Status;
use byos_cognitive::transcriptions::{NewTranscription, Options, Sources};
use byos_testkit::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::artifacts::{STORAGE_BLOB_DATA_CONTRIBUTOR, byos_feature};

const TWELVE_HOURS: u64 = 12 * 3600;

/// A server with one S0 Speech account `name` (without BYOS) in resource group `group`, live.
async fn speech_account(group: &str, name: &str) -> anyhow::Result<(TestServer, std::sync::Arc<LiveAccount>)> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/{group}");
    server.arm_as_admin(&client, Method::PUT, &group, Some(json!({"location": "eastus"}))).await?;
    let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/{name}");
    let speech = json!({"location": "eastus", "kind": "SpeechServices", "sku": {"name": "S0"}});
    server.arm_as_admin(&client, Method::PUT, &format!("{account_id}?api-version=2025-09-01"), Some(speech)).await?;
    let live = server.services()?.cognitive.account(&account_id.to_ascii_lowercase()).context("the account is live")?;
    Ok((server, live))
}

#[tokio::test]
async fn time_to_live_deletes_a_finished_byos_transcription_and_its_files() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/ttl");
    server.arm_as_admin(&client, Method::PUT, &group, Some(json!({"location": "eastus"}))).await?;
    let storage_id = format!("{group}/providers/Microsoft.Storage/storageAccounts/ttlstore");
    let storage = json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}});
    server.arm_as_admin(&client, Method::PUT, &storage_id, Some(storage)).await?;
    byos_feature(&server, &client, &sub).await?;
    let speech = json!({"location": "eastus", "kind": "SpeechServices", "sku": {"name": "S0"},
        "properties": {"userOwnedStorage": [{"resourceId": storage_id}]}});
    let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/ttlspeech");
    let account: Value = server
        .arm_as_admin(&client, Method::PUT, &format!("{account_id}?api-version=2025-09-01"), Some(speech))
        .await?;
    let principal = account["identity"]["principalId"].as_str().context("principalId")?;
    let role = format!(
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{STORAGE_BLOB_DATA_CONTRIBUTOR}"
    );
    let assignment = format!("{storage_id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4());
    let body = json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
    server.arm_as_admin(&client, Method::PUT, &assignment, Some(body)).await?;

    let cognitive = &server.services()?.cognitive;
    let live = cognitive.account(&account_id.to_ascii_lowercase()).context("the account is live")?;
    // A source that cannot be read: the job still ends, with its report in the customer's storage.
    let new = NewTranscription {
        model: None,
        display_name: "ttl".into(),
        description: None,
        custom_properties: Default::default(),
        locale: "en-US".into(),
        options: Options { time_to_live_secs: Some(TWELVE_HOURS), ..Options::default() },
        sources: Sources { content_urls: vec!["https://127.0.0.1:1/gone.wav".into()], ..Sources::default() },
    };
    let job = cognitive.create_transcription(std::sync::Arc::clone(&live), new).await?;
    let mut finished = None;
    for _ in 0..200 {
        let now = cognitive.transcription(&live, &job.id).await?;
        if matches!(now.status, Status::Succeeded | Status::Failed) {
            finished = Some(now);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let finished = finished.context("the job finished")?;
    let ended = finished.finished_at.context("a finished job says when")?;
    let prefix = format!("TranscriptionData/{}", job.id);
    let kept = cognitive.artifacts.list(&live, Area::Artifacts, &prefix).await?;
    anyhow::ensure!(kept.len() == 1, "the report is in the customer's storage: {kept:?}");

    let watch = byos_core::Caller::actor(byos_core::Actor::SpeechRetention);
    let before = cognitive.expire_transcriptions(&watch, ended + TWELVE_HOURS as i64 - 1).await?;
    anyhow::ensure!(before == 0, "not yet expired");
    anyhow::ensure!(cognitive.transcription(&live, &job.id).await.is_ok());
    let expired = cognitive.expire_transcriptions(&watch, ended + TWELVE_HOURS as i64).await?;
    anyhow::ensure!(expired == 1, "expired {expired}");
    let gone = cognitive.transcription(&live, &job.id).await.err().map(|e| e.status);
    anyhow::ensure!(gone == Some(404), "the record is gone: {gone:?}");
    let left = cognitive.artifacts.list(&live, Area::Artifacts, &prefix).await?;
    anyhow::ensure!(left.is_empty(), "its files in the customer's storage are gone too: {left:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn endpoint_logs_are_deleted_after_thirty_days_by_the_retention_watch() -> anyhow::Result<()> {
    let (server, live) = speech_account("logs", "logspeech").await?;
    let cognitive = &server.services()?.cognitive;
    let new = byos_cognitive::endpoints::NewEndpoint {
        display_name: "logged".into(),
        description: None,
        custom_properties: Default::default(),
        locale: "en-US".into(),
        model: None,
        logging: true,
    };
    let endpoint = cognitive.create_endpoint(&live, new).await?;
    let owner = byos_cognitive::endpoints::LogOwner::Endpoint(endpoint.id.clone());
    let audio = bytes::Bytes::from_static(b"RIFF....WAVE");
    cognitive.log_recognition(&live, &owner, "en-US", audio, "wav", &json!({"RecognitionStatus": "Success"})).await?;
    anyhow::ensure!(cognitive.logs(&live, &owner, "en-US").await?.len() == 2, "audio and result logged");

    let watch = byos_core::Caller::actor(byos_core::Actor::SpeechRetention);
    let today = time::OffsetDateTime::now_utc().date();
    let kept = cognitive.expire_logs(&watch, today + time::Duration::days(30)).await?;
    anyhow::ensure!(kept == 0 && cognitive.logs(&live, &owner, "en-US").await?.len() == 2, "30 days: still kept");
    let deleted = cognitive.expire_logs(&watch, today + time::Duration::days(31)).await?;
    anyhow::ensure!(deleted == 2, "deleted {deleted}");
    anyhow::ensure!(cognitive.logs(&live, &owner, "en-US").await?.is_empty(), "the logs are gone");
    // The watch is a caller of its own: another actor is refused.
    let other = byos_core::Caller::actor(byos_core::Actor::KeyRotation);
    cognitive.log_recognition(&live, &owner, "en-US", bytes::Bytes::from_static(b"x"), "wav", &json!({})).await?;
    let refused = cognitive.expire_logs(&other, today + time::Duration::days(31)).await.err().map(|e| e.status);
    anyhow::ensure!(refused == Some(403), "another actor may not delete logs: {refused:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn time_to_live_deletes_a_finished_batch_synthesis_with_its_outputs_and_only_as_the_retention_watch()
-> anyhow::Result<()> {
    use byos_cognitive::batch_synthesis::{InputKind, NewBatchSynthesis, Options, Secrets};

    let (server, live) = speech_account("synthttl", "synthttl").await?;
    let cognitive = &server.services()?.cognitive;
    // An input naming a voice byos lacks: the job still ends (Failed), with its summary kept.
    let ssml = "<speak><voice name='en-US-JennyNeural'>hi</voice></speak>";
    let new = NewBatchSynthesis {
        id: "ttl-job".into(),
        operation_id: None,
        description: None,
        input_kind: InputKind::Ssml,
        synthesis_config: None,
        options: Options { time_to_live_in_hours: 12, ..Options::default() },
        secrets: Secrets { inputs: vec![ssml.into()], destination_container_url: None },
    };
    cognitive.create_batch_synthesis(std::sync::Arc::clone(&live), new).await?;
    let mut finished = None;
    for _ in 0..200 {
        let now = cognitive.batch_synthesis(&live, "ttl-job").await?;
        if matches!(now.status, Status::Succeeded | Status::Failed) {
            finished = Some(now);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ended = finished.context("the job finished")?.finished_at.context("a finished job says when")?;
    let kept = cognitive.artifacts.list(&live, Area::Synthesis, "ttl-job/").await?;
    anyhow::ensure!(kept.len() == 1, "results.zip is kept: {kept:?}");

    let watch = byos_core::Caller::actor(byos_core::Actor::SpeechRetention);
    anyhow::ensure!(cognitive.expire_batch_syntheses(&watch, ended + TWELVE_HOURS as i64 - 1).await? == 0);
    anyhow::ensure!(cognitive.batch_synthesis(&live, "ttl-job").await.is_ok(), "not yet expired");
    let other = byos_core::Caller::actor(byos_core::Actor::KeyRotation);
    let refused = cognitive.expire_batch_syntheses(&other, ended + TWELVE_HOURS as i64).await;
    let status = refused.err().map(|e| e.to_api_error().status);
    anyhow::ensure!(status == Some(403), "another actor may not delete batch syntheses: {status:?}");
    anyhow::ensure!(cognitive.expire_batch_syntheses(&watch, ended + TWELVE_HOURS as i64).await? == 1);
    anyhow::ensure!(cognitive.batch_synthesis(&live, "ttl-job").await.is_err(), "the record is gone");
    let left = cognitive.artifacts.list(&live, Area::Synthesis, "ttl-job/").await?;
    anyhow::ensure!(left.is_empty(), "its outputs are gone too: {left:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn regression_base_model_logs_of_an_account_without_endpoints_were_never_expired() -> anyhow::Result<()> {
    let (server, live) = speech_account("baselogs", "baselogs").await?;
    let cognitive = &server.services()?.cognitive;
    let owner = byos_cognitive::endpoints::LogOwner::Base("en-US".into());
    let audio = bytes::Bytes::from_static(b"RIFF....WAVE");
    cognitive.log_recognition(&live, &owner, "en-US", audio, "wav", &json!({"RecognitionStatus": "Success"})).await?;
    let watch = byos_core::Caller::actor(byos_core::Actor::SpeechRetention);
    let today = time::OffsetDateTime::now_utc().date();
    let deleted = cognitive.expire_logs(&watch, today + time::Duration::days(31)).await?;
    anyhow::ensure!(deleted == 2, "the base model's audio and result went after 30 days: {deleted}");
    anyhow::ensure!(cognitive.logs(&live, &owner, "en-US").await?.is_empty(), "the logs are gone");
    server.stop().await;
    Ok(())
}
