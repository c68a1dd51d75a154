//! The one way the Speech API's entities (datasets, transcriptions, models, evaluations,
//! endpoints) are read, updated and deleted by id (`GET` / `PATCH` / `DELETE .../{kind}/{id}`):
//! the caller admitted for the entity's data action, the service called, the entity rendered in
//! the family's shape. Each entity says only what differs.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use byos_authz::Action;
use byos_core::ApiError;
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::dataplane::Plane;
use crate::speech_http::{Api, render, speech_account};
use crate::transcriptions_http::bad;
use crate::{CognitiveService, LiveAccount};

/// An entity of the Speech API kept by id in an account.
pub(crate) trait SpeechEntity: Sized + Send + 'static {
    const READ: Action;
    const WRITE: Action;
    const DELETE: Action;
    /// What an update body is called when it is not one (`dataset update`).
    const UPDATE: &'static str;

    fn get(
        service: &Arc<CognitiveService>,
        account: &LiveAccount,
        id: &str,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;

    /// Applies a `PATCH` body (a JSON object) to the entity.
    fn update(
        service: &Arc<CognitiveService>,
        account: &LiveAccount,
        id: &str,
        update: &Map<String, Value>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;

    /// Deletes the entity (one that does not exist is the entity's to judge).
    fn delete(
        service: &Arc<CognitiveService>,
        account: &LiveAccount,
        id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The entity as the API family shows it.
    fn wire(api: Api, account: &LiveAccount, entity: &Self) -> Value;
}

/// [`SpeechEntity`] for an entity whose service methods are plain get / update / delete by id.
macro_rules! speech_entity {
    ($entity:ty {
        actions: ($read:expr, $write:expr, $delete:expr),
        update: $name:literal,
        service: ($get:ident, $update:ident, $remove:ident),
        wire: $wire:path $(,)?
    }) => {
        impl $crate::entity_http::SpeechEntity for $entity {
            const READ: byos_authz::Action = $read;
            const WRITE: byos_authz::Action = $write;
            const DELETE: byos_authz::Action = $delete;
            const UPDATE: &'static str = $name;

            async fn get(
                service: &std::sync::Arc<$crate::CognitiveService>,
                account: &$crate::LiveAccount,
                id: &str,
            ) -> Result<Self, byos_core::ApiError> {
                service.$get(account, id).await
            }

            async fn update(
                service: &std::sync::Arc<$crate::CognitiveService>,
                account: &$crate::LiveAccount,
                id: &str,
                update: &serde_json::Map<String, serde_json::Value>,
            ) -> Result<Self, byos_core::ApiError> {
                service.$update(account, id, update).await
            }

            async fn delete(
                service: &std::sync::Arc<$crate::CognitiveService>,
                account: &$crate::LiveAccount,
                id: &str,
            ) -> Result<(), byos_core::ApiError> {
                service.$remove(account, id).await
            }

            fn wire(api: $crate::speech_http::Api, account: &$crate::LiveAccount, entity: &Self) -> serde_json::Value {
                $wire(api, account, entity)
            }
        }
    };
}
pub(crate) use speech_entity;

/// `GET`, `PATCH` and `DELETE` of `E` by id.
pub(crate) fn by_id<E: SpeechEntity>() -> MethodRouter<Plane> {
    axum::routing::get(get::<E>).patch(update::<E>).delete(delete::<E>)
}

async fn get<E: SpeechEntity>(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &E::READ)?;
            let entity = E::get(&plane.service, &account, &id).await?;
            Ok(axum::Json(E::wire(api, &account, &entity)).into_response())
        }
        .await,
    )
}

async fn update<E: SpeechEntity>(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &E::WRITE)?;
            let update: Map<String, Value> = serde_json::from_slice(&body)
                .map_err(|e| bad("InvalidPayload", format!("The request body is not a valid {}: {e}.", E::UPDATE)))?;
            let entity = E::update(&plane.service, &account, &id, &update).await?;
            Ok(axum::Json(E::wire(api, &account, &entity)).into_response())
        }
        .await,
    )
}

async fn delete<E: SpeechEntity>(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &E::DELETE)?;
            E::delete(&plane.service, &account, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
