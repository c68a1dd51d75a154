//! The Speech REST routes of an account's data plane (speech to text v3.2): parse, call the
//! HTTP-free domain ([`crate::datasets`]), render in the Speech format. Today: Custom Speech datasets.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byos_authz::Action;
use byos_core::ApiError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::dataplane::{Plane, admitted};
use crate::datasets::{
    Content, Dataset, DatasetFile, DatasetKind, MAX_BLOCK_BYTES, MAX_DATASET_BYTES, NewDataset, speech_error,
};
use crate::{CognitiveService, LiveAccount};

/// Which of the two speech to text API families a request is in (same datasets, other URLs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    /// `/speechtotext/v3.2/...`
    V32,
    /// `/speechtotext/...?api-version=2024-11-15`
    V20241115,
}

pub(crate) const V2024: &str = "2024-11-15";

impl Api {
    pub(crate) fn base(self) -> &'static str {
        match self {
            Api::V32 => "/speechtotext/v3.2",
            Api::V20241115 => "/speechtotext",
        }
    }

    /// `{endpoint}{base}{path}`, with the api-version the family needs.
    pub(crate) fn url(self, account: &LiveAccount, path: &str) -> String {
        let endpoint = CognitiveService::endpoint(account.settings.port);
        let url = format!("{}{}{path}", endpoint.trim_end_matches('/'), self.base());
        match self {
            Api::V32 => url,
            Api::V20241115 => format!("{url}?api-version={V2024}"),
        }
    }

    /// The path that commits a dataset's blocks.
    fn commit_path(self, id: &str) -> String {
        match self {
            Api::V32 => format!("/datasets/{id}/blocks:commit"),
            Api::V20241115 => format!("/datasets/{id}:commitBlocks"),
        }
    }
}
const READ: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/datasets/read");
const WRITE: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/datasets/write");
const DELETE: Action = Action::data("Microsoft.CognitiveServices/accounts/SpeechServices/speechrest/datasets/delete");
/// The locales byos's speech engine knows (PocketSphinx's US English model).
pub(crate) const LOCALES: [&str; 1] = ["en-US"];

/// `locale` as byos names it (`en-us` → `en-US`), when byos recognizes it.
pub(crate) fn known_locale(locale: &str) -> Option<&'static str> {
    LOCALES.iter().find(|l| l.eq_ignore_ascii_case(locale)).copied()
}
/// How long a file link lasts when the request does not say (Azure: 12 hours).
pub(crate) const DEFAULT_SAS_VALIDITY_SECS: u64 = 12 * 3600;

/// The Speech routes of both API families, added to an account's router.
pub(crate) fn routes() -> Router<Plane> {
    family(Api::V32)
        .route(
            "/speech/recognition/{mode}/cognitiveservices/v1",
            axum::routing::post(crate::recognition::recognize)
                .layer(DefaultBodyLimit::max(crate::recognition::MAX_BODY_BYTES))
                .get(crate::stt_socket::upgrade_v1),
        )
        .route("/stt/speech/universal/v2", axum::routing::get(crate::stt_socket::upgrade_v2))
        .route(
            "/speechtotext/v3.2/datasets/upload",
            axum::routing::post(upload).layer(DefaultBodyLimit::max(MAX_DATASET_BYTES + (1 << 20))),
        )
        .route("/speechtotext/v3.2/datasets/{id}/blocks:commit", axum::routing::post(commit_blocks))
        .merge(crate::synthesis::routes())
        .merge(crate::batch_synthesis_http::routes())
        .merge(crate::transcriptions_http::routes(Api::V32))
        .merge(crate::endpoints_http::routes(Api::V32))
        .merge(crate::models_http::routes(Api::V32))
        .merge(
            family(Api::V20241115)
                .merge(crate::transcriptions_http::routes(Api::V20241115))
                .merge(crate::endpoints_http::routes(Api::V20241115))
                .merge(crate::models_http::routes(Api::V20241115))
                .layer(axum::middleware::from_fn(require_api_version)),
        )
}

/// The dataset routes every family has, under its base (2024-11-15 commits with
/// `POST /datasets/{id}:commitBlocks`, which `{id}` catches).
fn family(api: Api) -> Router<Plane> {
    let base = api.base();
    Router::new()
        .route(&format!("{base}/datasets/locales"), axum::routing::get(locales))
        .route(&format!("{base}/datasets"), axum::routing::get(list).post(create))
        .route(&format!("{base}/datasets/{{id}}"), crate::entity_http::by_id::<Dataset>().post(commit_by_suffix))
        .route(
            &format!("{base}/datasets/{{id}}/blocks"),
            axum::routing::get(blocks).put(put_block).layer(DefaultBodyLimit::max(MAX_BLOCK_BYTES + (1 << 16))),
        )
        .route(&format!("{base}/datasets/{{id}}/files"), axum::routing::get(files))
        .route(&format!("{base}/datasets/{{id}}/files/{{file}}"), axum::routing::get(file))
        .layer(axum::Extension(api))
}

/// The 2024-11-15 family answers only requests that name its api-version.
async fn require_api_version(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let named = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.eq_ignore_ascii_case(&format!("api-version={V2024}"))));
    if named {
        return next.run(request).await;
    }
    byos_http::render_error(&speech_error(
        400,
        "InvalidRequest",
        format!(
            "The api-version query parameter is missing or not supported; byos serves api-version={V2024} here (and /speechtotext/v3.2)."
        ),
    ))
}

pub(crate) fn render(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| byos_http::render_error(&e))
}

/// The account, when it serves Speech, and the caller admitted for `action`.
pub(crate) fn speech_account(
    plane: &Plane,
    extensions: &Extensions,
    headers: &HeaderMap,
    action: &Action,
) -> Result<Arc<LiveAccount>, ApiError> {
    let account = admitted(plane, extensions, headers, action)?;
    match account.settings.kind.serves_speech() {
        true => Ok(account),
        false => Err(ApiError::not_found("404", "Resource not found")),
    }
}

fn wire(api: Api, account: &LiveAccount, d: &Dataset) -> Value {
    let url = api.url(account, &format!("/datasets/{}", d.id));
    let mut properties = Map::new();
    if let Some(n) = d.accepted_line_count {
        properties.insert("acceptedLineCount".into(), json!(n));
    }
    if let Some(n) = d.rejected_line_count {
        properties.insert("rejectedLineCount".into(), json!(n));
    }
    if let Some(duration) = &d.duration {
        properties.insert("duration".into(), json!(duration));
    }
    if let Some((code, message)) = &d.error {
        properties.insert("error".into(), json!({"code": code, "message": message}));
    }
    let mut links = json!({"files": api.url(account, &format!("/datasets/{}/files", d.id))});
    if d.awaiting_blocks {
        links["listBlocks"] = json!(api.url(account, &format!("/datasets/{}/blocks", d.id)));
        links["commitBlocks"] = json!(api.url(account, &api.commit_path(&d.id)));
    }
    let mut wire = json!({
        "self": url, "kind": d.kind.name(), "links": links,
        "properties": properties, "lastActionDateTime": d.last_action, "status": d.status,
        "createdDateTime": d.created, "locale": d.locale, "displayName": d.display_name,
    });
    if let Some(description) = &d.description {
        wire["description"] = json!(description);
    }
    if !d.custom_properties.is_empty() {
        wire["customProperties"] = json!(d.custom_properties);
    }
    if let Some(url) = &d.content_url {
        wire["contentUrl"] = json!(url);
    }
    wire
}

fn created(api: Api, account: &LiveAccount, d: &Dataset) -> Response {
    let location = api.url(account, &format!("/datasets/{}", d.id));
    (StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(wire(api, account, d))).into_response()
}

fn invalid(message: impl Into<String>) -> ApiError {
    speech_error(400, "InvalidArgument", message)
}

/// Validates what a new dataset says about itself.
fn new_dataset(kind: Option<&str>, locale: Option<&str>, display_name: Option<&str>) -> Result<NewDataset, ApiError> {
    let kind = DatasetKind::parse(kind.ok_or_else(|| invalid("The dataset's kind is required."))?)?;
    let locale = locale.ok_or_else(|| invalid("The dataset's locale is required."))?;
    let locale = known_locale(locale).ok_or_else(|| {
        invalid(format!(
            "The locale '{locale}' is not supported; byos's speech engine supports {}.",
            LOCALES.join(", ")
        ))
    })?;
    let display_name = display_name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("The dataset's displayName is required."))?;
    Ok(NewDataset {
        kind,
        locale: locale.to_owned(),
        display_name: display_name.to_owned(),
        description: None,
        custom_properties: Map::new(),
    })
}

async fn locales(State(plane): State<Plane>, extensions: Extensions, headers: HeaderMap) -> Response {
    render((|| {
        speech_account(&plane, &extensions, &headers, &READ)?;
        let kinds = ["Language", "Acoustic", "Pronunciation", "AudioFiles"];
        let map: Map<String, Value> = kinds.iter().map(|k| ((*k).to_owned(), json!(LOCALES))).collect();
        Ok(axum::Json(map).into_response())
    })())
}

#[derive(Deserialize)]
pub(crate) struct Page {
    pub(crate) skip: Option<usize>,
    pub(crate) top: Option<usize>,
}

impl Page {
    fn bounds(&self) -> (usize, usize) {
        (self.skip.unwrap_or(0), self.top.unwrap_or(100).clamp(1, 100))
    }

    /// The items of `all` on the page asked for.
    pub(crate) fn window<'a, T>(&self, all: &'a [T]) -> impl Iterator<Item = &'a T> {
        let (skip, top) = self.bounds();
        all.iter().skip(skip).take(top)
    }

    /// `{"values": [...], "@nextLink"?}`: the page's `values` of `total` items, linking to the next
    /// page at `path`.
    pub(crate) fn body(&self, api: Api, account: &LiveAccount, path: &str, values: Vec<Value>, total: usize) -> Value {
        let (skip, top) = self.bounds();
        let mut body = json!({"values": values});
        if skip + top < total {
            let next = api.url(account, path);
            let joiner = if next.contains('?') { '&' } else { '?' };
            body["@nextLink"] = json!(format!("{next}{joiner}skip={}&top={top}", skip + top));
        }
        body
    }

    /// The page of `all` asked for, each item rendered by `wire`.
    pub(crate) fn render<T>(
        &self,
        api: Api,
        account: &LiveAccount,
        path: &str,
        all: &[T],
        wire: impl Fn(&T) -> Value,
    ) -> Value {
        self.body(api, account, path, self.window(all).map(wire).collect(), all.len())
    }
}

async fn list(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &READ)?;
            let all = plane.service.datasets(&account).await?;
            let body = page.render(api, &account, "/datasets", &all, |d| wire(api, &account, d));
            Ok(axum::Json(body).into_response())
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    kind: Option<String>,
    locale: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    custom_properties: Map<String, Value>,
    content_url: Option<String>,
}

async fn create(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            let body: CreateBody = serde_json::from_slice(&body)
                .map_err(|e| invalid(format!("The request body is not a valid dataset: {e}.")))?;
            let mut new = new_dataset(body.kind.as_deref(), body.locale.as_deref(), body.display_name.as_deref())?;
            new.description = body.description;
            new.custom_properties = body.custom_properties;
            // Without a contentUrl the dataset waits for its content in blocks.
            let content = match body.content_url.filter(|u| !u.is_empty()) {
                Some(url) if !url.starts_with("https://") => {
                    return Err(invalid("The contentUrl must be an https URL."));
                }
                Some(url) => Content::Url(url),
                None => Content::Blocks,
            };
            let dataset = plane.service.create_dataset(Arc::clone(&account), new, content).await?;
            Ok(created(api, &account, &dataset))
        }
        .await,
    )
}

/// `POST /datasets/upload`: multipart fields `displayName`, `locale`, `kind`, `description`,
/// `customProperties` (JSON) and the file `data`.
async fn upload(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            let mut fields: Map<String, Value> = Map::new();
            let mut data = None;
            while let Some(field) =
                form.next_field().await.map_err(|e| invalid(format!("The form is malformed: {e}.")))?
            {
                let name = field.name().unwrap_or_default().to_owned();
                let bytes =
                    field.bytes().await.map_err(|e| invalid(format!("The form field '{name}' is unreadable: {e}.")))?;
                if name == "data" {
                    data = Some(bytes);
                } else {
                    fields.insert(name, json!(String::from_utf8_lossy(&bytes)));
                }
            }
            let text = |name: &str| fields.get(name).and_then(Value::as_str);
            let mut new = new_dataset(text("kind"), text("locale"), text("displayName"))?;
            new.description = text("description").map(str::to_owned);
            if let Some(properties) = text("customProperties").filter(|p| !p.is_empty()) {
                new.custom_properties =
                    serde_json::from_str(properties).map_err(|_| invalid("customProperties is not a JSON object."))?;
            }
            let data = data.ok_or_else(|| invalid("The form has no 'data' file."))?;
            let dataset = plane.service.create_dataset(Arc::clone(&account), new, Content::Bytes(data)).await?;
            Ok(created(Api::V32, &account, &dataset))
        }
        .await,
    )
}

/// The account and its dataset `id`, for a caller that may read datasets.
async fn readable(
    plane: &Plane,
    extensions: &Extensions,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Arc<LiveAccount>, Dataset), ApiError> {
    let account = speech_account(plane, extensions, headers, &READ)?;
    let dataset = plane.service.dataset(&account, id).await?;
    Ok((account, dataset))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileQuery {
    sas_validity_in_seconds: Option<u64>,
}

impl FileQuery {
    pub(crate) fn validity(&self) -> u64 {
        self.sas_validity_in_seconds.unwrap_or(DEFAULT_SAS_VALIDITY_SECS)
    }
}

/// A file as the API returns it, with its link (see [`crate::artifacts::ArtifactStore::link`]).
async fn file_wire(
    plane: &Plane,
    api: Api,
    account: &LiveAccount,
    dataset: &Dataset,
    file: &DatasetFile,
    validity: u64,
) -> Result<Value, ApiError> {
    let mut wire = json!({
        "self": api.url(account, &format!("/datasets/{}/files/{}", dataset.id, file.id)),
        "name": file.name, "kind": file.kind, "properties": {"size": file.size}, "createdDateTime": file.created,
    });
    let link = plane.service.dataset_file_link(account, file, std::time::Duration::from_secs(validity)).await?;
    wire["links"] = json!({"contentUrl": link});
    Ok(wire)
}

async fn files(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let (account, dataset) = readable(&plane, &extensions, &headers, &id).await?;
            let mut values = Vec::with_capacity(dataset.files.len());
            for file in &dataset.files {
                values.push(file_wire(&plane, api, &account, &dataset, file, query.validity()).await?);
            }
            Ok(axum::Json(json!({"values": values})).into_response())
        }
        .await,
    )
}

async fn file(
    State(plane): State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path((id, file_id)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> Response {
    render(
        async {
            let (account, dataset) = readable(&plane, &extensions, &headers, &id).await?;
            let file = dataset
                .files
                .iter()
                .find(|f| f.id.eq_ignore_ascii_case(&file_id))
                .ok_or_else(|| speech_error(404, "NotFound", format!("The file '{file_id}' does not exist.")))?;
            Ok(axum::Json(file_wire(&plane, api, &account, &dataset, file, query.validity()).await?).into_response())
        }
        .await,
    )
}

#[derive(Deserialize)]
struct BlockQuery {
    blockid: Option<String>,
}

/// `PUT /datasets/{id}/blocks?blockid=...`: one block (at most 8 MiB) of a dataset created
/// without content.
async fn put_block(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<BlockQuery>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            let block_id = query.blockid.ok_or_else(|| invalid("The blockid query parameter is required."))?;
            plane.service.put_block(&account, &id, &block_id, body).await?;
            Ok(StatusCode::CREATED.into_response())
        }
        .await,
    )
}

/// `GET /datasets/{id}/blocks`: the blocks uploaded and not yet committed.
async fn blocks(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    render(
        async {
            let (_, dataset) = readable(&plane, &extensions, &headers, &id).await?;
            let uncommitted: Vec<Value> =
                dataset.blocks.iter().map(|b| json!({"name": b.id, "size": b.size})).collect();
            Ok(axum::Json(json!({"committedBlocks": [], "uncommittedBlocks": uncommitted})).into_response())
        }
        .await,
    )
}

#[derive(Deserialize)]
struct CommitEntry {
    id: String,
}

/// `POST /datasets/{id}/blocks:commit` with `[{"kind": "Latest", "id": "..."}]`: the blocks, in
/// that order, become the dataset's content and its import starts.
async fn commit_blocks(
    State(plane): State<Plane>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    render(
        async {
            let account = speech_account(&plane, &extensions, &headers, &WRITE)?;
            let entries: Vec<CommitEntry> =
                serde_json::from_slice(&body).map_err(|e| invalid(format!("The block list is invalid: {e}.")))?;
            let order: Vec<String> = entries.into_iter().map(|e| e.id).collect();
            plane.service.commit_blocks(Arc::clone(&account), &id, &order).await?;
            Ok(StatusCode::OK.into_response())
        }
        .await,
    )
}

/// `POST /datasets/{id}:commitBlocks` (2024-11-15), caught by the `{id}` route; any other POST
/// there is no operation.
async fn commit_by_suffix(
    state: State<Plane>,
    axum::Extension(api): axum::Extension<Api>,
    extensions: Extensions,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match (api, id.strip_suffix(":commitBlocks")) {
        (Api::V20241115, Some(id)) => commit_blocks(state, extensions, headers, Path(id.to_owned()), body).await,
        _ => byos_http::render_error(&speech_error(405, "InvalidRequest", "POST is not an operation of a dataset.")),
    }
}

crate::entity_http::speech_entity!(Dataset {
    actions: (READ, WRITE, DELETE),
    update: "dataset update",
    service: (dataset, update_dataset, delete_dataset),
    wire: wire,
});
