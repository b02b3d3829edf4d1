//! The Label Studio backend (REST API, tested against label-studio 1.23).
//!
//! One item becomes one task: the JPEG, a prediction holding the detections as
//! `rectanglelabels` (percent coordinates, so they land where the spool says also when it
//! downscaled the JPEG; `original_width/height` are the JPEG's), and `meta` with the scores.
//!
//! Delivery, so that a crash or timeout at any point leaves at most one task per stable id:
//! 1. find: `GET /api/tasks` with a Data Manager filter on `data.<image>` containing the item's
//!    file name (`<stable id>.jpg`); a task found is completed where it lacks the prediction
//!    (`POST /api/predictions`) or the meta (`PATCH /api/tasks/{id}`), and the item is done;
//! 2. upload the file without creating a task: `POST /api/projects/{id}/import?commit_to_project=false`
//!    (an uploaded file that never became a task is invisible to labelers and harmless);
//! 3. create the task with its prediction and meta in one JSON import, which Label Studio commits
//!    in one transaction: a task exists with all of it or not at all.
//!
//! Tokens: a legacy API token is sent as `Authorization: Token …`; a personal access token (a
//! JWT refresh token, the default in new installs) is exchanged at `/api/token/refresh` for an
//! access token sent as `Bearer …`, refreshed when the server answers 401.

use std::time::Duration;

use serde_json::{json, Value};
use ureq::http;
use ureq::tls::{RootCerts, TlsConfig};

use super::token::{self, Secret};
use super::{Backend, Delivery, Item, UploadConfig, UploadError};
use crate::store::record::ContextFrame;

/// The names the project's labeling config gives the image and the boxes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interface {
    /// `<Image name=…>`: the prediction's `to_name`.
    image_name: String,
    /// The data key of `<Image value="$key">`.
    data_key: String,
    /// `<RectangleLabels name=…>`: the prediction's `from_name`.
    labels_name: String,
}

impl Default for Interface {
    fn default() -> Self {
        Interface {
            image_name: "image".into(),
            data_key: "image".into(),
            labels_name: "label".into(),
        }
    }
}

/// A task found by its stable id.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundTask {
    pub task_id: u64,
    pub has_prediction: bool,
    pub has_meta: bool,
    /// Tasks carrying this stable id (more than 1 would be a duplicate).
    pub copies: usize,
}

/// A Label Studio server and project.
pub struct LabelStudio {
    agent: ureq::Agent,
    base: String,
    project_spec: String,
    /// Class names, for the labeling config of a project this backend creates.
    labels: Vec<String>,
    token: Secret,
    /// The current `Authorization` header value.
    auth: Option<String>,
    project: Option<(u64, Interface)>,
}

impl LabelStudio {
    /// A backend for `config` (already validated); `labels` are the model's class names.
    /// Reads the token and the CA file now, so a bad one is reported at start.
    pub fn new(config: &UploadConfig, labels: &[String]) -> Result<LabelStudio, UploadError> {
        let token = token::load(config.token_file.as_deref(), config.token_env.as_deref())
            .map_err(UploadError::Token)?;
        let roots = match &config.ca_file {
            None => RootCerts::WebPki,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| UploadError::Tls {
                    url: config.url.clone(),
                    message: format!("upload.ca_file {}: {e}", path.display()),
                })?;
                let mut certs = Vec::new();
                for item in ureq::tls::parse_pem(&pem) {
                    match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                        Ok(_) => {}
                        Err(e) => {
                            return Err(UploadError::Tls {
                                url: config.url.clone(),
                                message: format!("upload.ca_file {}: {e}", path.display()),
                            })
                        }
                    }
                }
                if certs.is_empty() {
                    return Err(UploadError::Tls {
                        url: config.url.clone(),
                        message: format!(
                            "upload.ca_file {}: no PEM certificate in it",
                            path.display()
                        ),
                    });
                }
                RootCerts::from(certs)
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(false)
            .user_agent(concat!("edgesieve/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Ok(LabelStudio {
            agent,
            base: config.url.trim_end_matches('/').to_string(),
            project_spec: config.project.trim().to_string(),
            labels: labels.to_vec(),
            token,
            auth: None,
            project: None,
        })
    }

    /// The project's id, resolving (or creating) it on first use.
    pub fn project_id(&mut self) -> Result<u64, UploadError> {
        Ok(self.project()?.0)
    }

    /// Tasks of the project whose image name ends in the stable id's file name.
    pub fn find(&mut self, stable_id: &str) -> Result<Option<FoundTask>, UploadError> {
        let (project, iface) = self.project()?;
        let needle = format!("{stable_id}.jpg");
        let filter = json!({"filters": {"conjunction": "and", "items": [{
            "filter": format!("filter:tasks:data.{}", iface.data_key),
            "operator": "contains",
            "type": "String",
            "value": needle,
        }]}});
        let v = self.call_json(
            "GET",
            "/api/tasks",
            &[
                ("project", project.to_string()),
                ("page_size", "100".into()),
                ("fields", "all".into()),
                ("query", filter.to_string()),
            ],
            None,
        )?;
        let tasks = v
            .get("tasks")
            .and_then(Value::as_array)
            .or_else(|| v.as_array())
            .ok_or_else(|| self.protocol("/api/tasks", "no task list in the answer"))?;
        let mine: Vec<&Value> = tasks
            .iter()
            .filter(|t| {
                t.get("data")
                    .and_then(|d| d.get(&iface.data_key))
                    .and_then(Value::as_str)
                    .is_some_and(|image| {
                        image.ends_with(&format!("-{needle}"))
                            || image.ends_with(&format!("/{needle}"))
                    })
            })
            .collect();
        let Some(first) = mine.first() else {
            return Ok(None);
        };
        if mine.len() > 1 {
            log::warn!(
                "upload: {} tasks on the server carry {stable_id} (a duplicate made outside this uploader?)",
                mine.len()
            );
        }
        let task_id = first
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.protocol("/api/tasks", "a task without an id"))?;
        let predictions = first
            .get("total_predictions")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .max(
                first
                    .get("predictions")
                    .and_then(Value::as_array)
                    .map_or(0, |p| p.len() as u64),
            );
        let has_meta = first
            .get("meta")
            .and_then(|m| m.get("edgesieve_id"))
            .and_then(Value::as_str)
            == Some(stable_id);
        Ok(Some(FoundTask {
            task_id,
            has_prediction: predictions > 0,
            has_meta,
            copies: mine.len(),
        }))
    }

    fn project(&mut self) -> Result<(u64, Interface), UploadError> {
        if let Some(p) = &self.project {
            return Ok(p.clone());
        }
        let found = match self.project_spec.parse::<u64>() {
            Ok(id) => {
                let v = self.call_json("GET", &format!("/api/projects/{id}"), &[], None);
                match v {
                    Ok(v) => (id, interface_of(&v)),
                    Err(UploadError::Status { status: 404, .. }) => {
                        return Err(UploadError::Missing {
                            what: format!("upload.project {id}: {} has no project {id}", self.base),
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(_) => match self.project_by_title()? {
                Some(found) => found,
                None => self.create_project()?,
            },
        };
        log::info!("upload: Label Studio project {} at {}", found.0, self.base);
        self.project = Some(found.clone());
        Ok(found)
    }

    fn project_by_title(&mut self) -> Result<Option<(u64, Interface)>, UploadError> {
        let title = self.project_spec.clone();
        for page in 1..=1000u32 {
            let v = self.call_json(
                "GET",
                "/api/projects",
                &[
                    ("title", title.clone()),
                    ("page", page.to_string()),
                    ("page_size", "100".into()),
                ],
                None,
            )?;
            let results = v
                .get("results")
                .and_then(Value::as_array)
                .or_else(|| v.as_array())
                .ok_or_else(|| self.protocol("/api/projects", "no project list"))?;
            for p in results {
                if p.get("title").and_then(Value::as_str) == Some(title.as_str()) {
                    let id = p
                        .get("id")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| self.protocol("/api/projects", "a project without an id"))?;
                    return Ok(Some((id, interface_of(p))));
                }
            }
            if v.get("next").is_none_or(Value::is_null) {
                break;
            }
        }
        Ok(None)
    }

    fn create_project(&mut self) -> Result<(u64, Interface), UploadError> {
        let iface = Interface::default();
        let config = label_config(&self.labels);
        let body = json!({
            "title": self.project_spec,
            "description": "Frames kept by edgesieve, with the detector's boxes as predictions.",
            "label_config": config,
        });
        let v = self.call_json("POST", "/api/projects", &[], Some(Body::Json(&body)))?;
        let id = v
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.protocol("/api/projects", "the new project has no id"))?;
        log::info!(
            "upload: created Label Studio project {id} {:?} for {} classes",
            self.project_spec,
            self.labels.len()
        );
        Ok((id, iface))
    }

    /// Uploads the file without creating a task; returns the path Label Studio serves it at.
    fn upload_file(
        &mut self,
        project: u64,
        file_name: &str,
        jpeg: &[u8],
    ) -> Result<String, UploadError> {
        let boundary = format!("edgesieve-{:016x}", crate::store::crc32(jpeg));
        let mut body = Vec::with_capacity(jpeg.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: image/jpeg\r\n\r\n",
            )
            .as_bytes(),
        );
        body.extend_from_slice(jpeg);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let path = format!("/api/projects/{project}/import");
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let v = self.call_json(
            "POST",
            &path,
            &[("commit_to_project", "false".into())],
            Some(Body::Raw(&content_type, &body)),
        )?;
        let upload_id = v
            .get("file_upload_ids")
            .and_then(Value::as_array)
            .and_then(|ids| ids.first())
            .and_then(Value::as_u64)
            .ok_or_else(|| self.protocol(&path, "no file_upload_ids in the answer"))?;
        let fpath = format!("/api/import/file-upload/{upload_id}");
        let v = self.call_json("GET", &fpath, &[], None)?;
        let file = v
            .get("file")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol(&fpath, "no file in the answer"))?;
        if !file.ends_with(file_name) {
            return Err(self.protocol(
                &fpath,
                &format!("the stored file {file:?} does not end in {file_name}",),
            ));
        }
        Ok(if file.starts_with('/') || file.contains("://") {
            file.to_string()
        } else {
            format!("/data/{file}")
        })
    }
}

/// The prediction of `item` for a project whose labeling config names its parts as `iface`:
/// the detections as `rectanglelabels` in percent of the frame (the same in the downscaled JPEG).
fn prediction(item: &Item, iface: &Interface) -> Value {
    let r = item.record;
    let (w, h) = (r.width.max(1) as f64, r.height.max(1) as f64);
    let result: Vec<Value> = r
        .detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pct = |v: f32, of: f64| (v as f64 / of * 100.0).clamp(0.0, 100.0);
            let (x1, y1) = (pct(d.bbox[0], w), pct(d.bbox[1], h));
            let (x2, y2) = (pct(d.bbox[2], w), pct(d.bbox[3], h));
            json!({
                "id": format!("{}-{i}", item.stable_id),
                "from_name": iface.labels_name,
                "to_name": iface.image_name,
                "type": "rectanglelabels",
                "original_width": item.jpeg_width,
                "original_height": item.jpeg_height,
                "image_rotation": 0,
                "value": {
                    "x": x1, "y": y1, "width": (x2 - x1).max(0.0), "height": (y2 - y1).max(0.0),
                    "rotation": 0, "rectanglelabels": [d.class_name],
                },
                "score": d.score,
            })
        })
        .collect();
    json!({
        "model_version": model_version(&r.model),
        // Label Studio sorts by prediction score for active learning: the frame's confidence.
        "score": (1.0 - r.scores.uncertainty).clamp(0.0, 1.0),
        "result": result,
    })
}

/// A Label Studio task for `item` whose image is at `image` (a URL or `/data/...` path): data,
/// meta and the prediction, as the import API and a JSON import file take it.
pub fn task_json(item: &Item, image: &str) -> Value {
    let iface = Interface::default();
    let mut data = serde_json::Map::new();
    data.insert(iface.data_key.clone(), json!(image));
    json!({
        "data": data,
        "meta": item.meta(),
        "predictions": [prediction(item, &iface)],
    })
}

/// A context frame's task (no prediction: the detector's boxes are the kept frame's), as the
/// import API and a JSON import file take it.
pub fn context_task_json(item: &Item, frame: &ContextFrame, image: &str) -> Value {
    let mut data = serde_json::Map::new();
    data.insert(Interface::default().data_key, json!(image));
    json!({"data": data, "meta": item.context_meta(frame)})
}

/// The labeling config of a bounding-box project for `labels`, naming its parts as the
/// predictions of this module do.
pub fn label_config(labels: &[String]) -> String {
    let iface = Interface::default();
    let mut config = format!(
        "<View>\n  <Image name=\"{}\" value=\"${}\"/>\n  <RectangleLabels name=\"{}\" toName=\"{}\">\n",
        iface.image_name, iface.data_key, iface.labels_name, iface.image_name
    );
    for label in labels {
        config.push_str(&format!("    <Label value=\"{}\"/>\n", xml_escape(label)));
    }
    config.push_str("  </RectangleLabels>\n</View>\n");
    config
}

impl LabelStudio {
    fn protocol(&self, path: &str, message: &str) -> UploadError {
        UploadError::Protocol {
            url: format!("{}{path}", self.base),
            message: message.to_string(),
        }
    }

    /// The `Authorization` header, exchanging a personal access token when needed.
    fn auth_header(&mut self, refresh: bool) -> Result<String, UploadError> {
        if !self.token.is_jwt() {
            return Ok(format!("Token {}", self.token.expose()));
        }
        if let (Some(a), false) = (&self.auth, refresh) {
            return Ok(a.clone());
        }
        let body = json!({"refresh": self.token.expose()}).to_string();
        let (status, _, text) = self.send(
            "POST",
            "/api/token/refresh",
            &[],
            None,
            Some(Body::Raw("application/json", body.as_bytes())),
        )?;
        if status != 200 {
            return Err(status_error(
                "POST",
                &self.base,
                "/api/token/refresh",
                status,
                None,
                &text,
            ));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| self.protocol("/api/token/refresh", &e.to_string()))?;
        let access = v
            .get("access")
            .and_then(Value::as_str)
            .ok_or_else(|| self.protocol("/api/token/refresh", "no access token in the answer"))?;
        let header = format!("Bearer {access}");
        self.auth = Some(header.clone());
        Ok(header)
    }

    /// An authenticated request whose answer is JSON; non-2xx statuses are errors.
    fn call_json(
        &mut self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<Value, UploadError> {
        let mut auth = self.auth_header(false)?;
        let mut answer = self.send(method, path, query, Some(&auth), body)?;
        if answer.0 == 401 && self.token.is_jwt() {
            // The access token expired: one fresh one, one more try.
            auth = self.auth_header(true)?;
            answer = self.send(method, path, query, Some(&auth), body)?;
        }
        let (status, retry_after, text) = answer;
        if !(200..300).contains(&status) {
            return Err(status_error(
                method,
                &self.base,
                path,
                status,
                retry_after,
                &text,
            ));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| self.protocol(path, &format!("not JSON ({e}): {}", excerpt(&text))))
    }

    /// One HTTP exchange: (status, Retry-After, body text).
    fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        auth: Option<&str>,
        body: Option<Body>,
    ) -> Result<(u16, Option<Duration>, String), UploadError> {
        let mut url = format!("{}{path}", self.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            percent_encode(v, &mut url);
        }
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let shown = format!("{}{path}", self.base);
        let built = |e: http::Error| UploadError::Protocol {
            url: shown.clone(),
            message: format!("cannot build the request: {e}"),
        };
        let result = match body {
            None => self.agent.run(req.body(()).map_err(built)?),
            Some(Body::Json(v)) => self.agent.run(
                req.header("Content-Type", "application/json")
                    .body(v.to_string().into_bytes())
                    .map_err(built)?,
            ),
            Some(Body::Raw(ct, bytes)) => self
                .agent
                .run(req.header("Content-Type", ct).body(bytes).map_err(built)?),
        };
        let resp = result.map_err(|e| transport_error(&shown, e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| transport_error(&shown, e))?;
        Ok((status, retry_after, text))
    }
}

impl Backend for LabelStudio {
    fn describe(&self) -> String {
        format!("Label Studio {} (project {})", self.base, self.project_spec)
    }

    fn deliver(&mut self, item: &Item) -> Result<Delivery, UploadError> {
        let (project, iface) = self.project()?;
        if let Some(found) = self.find(item.stable_id)? {
            if found.has_prediction && found.has_meta {
                return Ok(Delivery::AlreadyThere);
            }
            if !found.has_prediction {
                let mut p = prediction(item, &iface);
                p["task"] = json!(found.task_id);
                self.call_json("POST", "/api/predictions", &[], Some(Body::Json(&p)))?;
            }
            if !found.has_meta {
                let body = json!({"meta": item.meta()});
                self.call_json(
                    "PATCH",
                    &format!("/api/tasks/{}", found.task_id),
                    &[],
                    Some(Body::Json(&body)),
                )?;
            }
            return Ok(Delivery::Completed);
        }
        let image = self.upload_file(project, &item.file_name(), item.jpeg)?;
        let mut data = serde_json::Map::new();
        data.insert(iface.data_key.clone(), json!(image));
        // The kept frame and its context frames in one import: one event, created together.
        let mut tasks = vec![json!({
            "data": data,
            "meta": item.meta(),
            "predictions": [prediction(item, &iface)],
        })];
        for (frame, jpeg) in item.context.iter() {
            let image = self.upload_file(project, &item.context_file_name(frame), jpeg)?;
            tasks.push(context_task_json(item, frame, &image));
        }
        let path = format!("/api/projects/{project}/import");
        let v = self.call_json("POST", &path, &[], Some(Body::Json(&json!(tasks))))?;
        let created = v.get("task_count").and_then(Value::as_u64);
        if created != Some(tasks.len() as u64) {
            return Err(self.protocol(
                &path,
                &format!(
                    "expected {} tasks created, the answer says {created:?}",
                    tasks.len()
                ),
            ));
        }
        Ok(Delivery::Created)
    }
}

#[derive(Clone, Copy)]
enum Body<'a> {
    Json(&'a Value),
    /// Content type and bytes.
    Raw(&'a str, &'a [u8]),
}

fn status_error(
    method: &'static str,
    base: &str,
    path: &str,
    status: u16,
    retry_after: Option<Duration>,
    text: &str,
) -> UploadError {
    UploadError::Status {
        method,
        url: format!("{base}{path}"),
        status,
        retry_after,
        body: excerpt(text),
    }
}

/// The start of a response body on one line (an HTML error page is cut short).
fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(200).collect();
    if one_line.chars().count() > 200 {
        out.push('…');
    }
    out
}

fn transport_error(url: &str, e: ureq::Error) -> UploadError {
    let tls = match &e {
        ureq::Error::Tls(_) | ureq::Error::Pem(_) | ureq::Error::Rustls(_) => true,
        // rustls reports a failed verification or handshake as InvalidData with its own error.
        ureq::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some()
        }
        _ => false,
    };
    let message = e.to_string();
    if tls {
        UploadError::Tls {
            url: url.to_string(),
            message,
        }
    } else {
        UploadError::Transport {
            url: url.to_string(),
            message,
        }
    }
}

/// `model_version` of a record's model label "`/path/model.onnx (int8)`": "`model.onnx (int8)`".
fn model_version(label: &str) -> String {
    let (path, rest) = match label.find(" (") {
        Some(i) => label.split_at(i),
        None => (label, ""),
    };
    let name = std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path);
    format!("{name}{rest}")
}

/// The names a labeling config gives the first `<Image>` and `<RectangleLabels>` (defaults when
/// absent: the project was made by this backend).
fn interface_of(project: &Value) -> Interface {
    let mut iface = Interface::default();
    let Some(config) = project.get("label_config").and_then(Value::as_str) else {
        return iface;
    };
    if let Some(tag) = tag(config, "<Image") {
        if let Some(n) = attr(tag, "name") {
            iface.image_name = n;
        }
        if let Some(v) = attr(tag, "value") {
            iface.data_key = v.trim_start_matches('$').to_string();
        }
    }
    if let Some(tag) = tag(config, "<RectangleLabels") {
        if let Some(n) = attr(tag, "name") {
            iface.labels_name = n;
        }
    }
    iface
}

/// The text of the first tag starting with `open` (up to its '>').
fn tag<'a>(xml: &'a str, open: &str) -> Option<&'a str> {
    let start = xml.match_indices(open).map(|(i, _)| i).find(|&i| {
        matches!(
            xml.as_bytes().get(i + open.len()),
            Some(b' ' | b'\n' | b'\t' | b'/' | b'>')
        )
    })?;
    let end = xml[start..].find('>')? + start;
    Some(&xml[start..end])
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().last();
        let after = rest[i + name.len()..].trim_start();
        if before.is_some_and(char::is_whitespace) {
            if let Some(after) = after.strip_prefix('=') {
                let after = after.trim_start();
                let quote = after.chars().next()?;
                if quote == '"' || quote == '\'' {
                    let value = &after[1..];
                    return value.find(quote).map(|end| value[..end].to_string());
                }
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_from_a_labeling_config() {
        let p = json!({"label_config": "<View><Image name=\"img\" value=\"$photo\" zoom=\"true\"/><RectangleLabels name=\"boxes\" toName=\"img\"><Label value=\"car\"/></RectangleLabels></View>"});
        assert_eq!(
            interface_of(&p),
            Interface {
                image_name: "img".into(),
                data_key: "photo".into(),
                labels_name: "boxes".into()
            }
        );
        assert_eq!(interface_of(&json!({})), Interface::default());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        let mut s = String::new();
        percent_encode("{\"a\": \"x-1.jpg\"}", &mut s);
        assert_eq!(s, "%7B%22a%22%3A%20%22x-1.jpg%22%7D");
    }

    #[test]
    fn model_version_is_the_file_and_precision() {
        assert_eq!(
            model_version("/x/models/yolox_nano_int8.onnx (int8)"),
            "yolox_nano_int8.onnx (int8)"
        );
        assert_eq!(model_version("m"), "m");
    }

    #[test]
    fn excerpts_are_short_and_one_line() {
        let e = excerpt(&format!("<html>\n  {}</html>", "x".repeat(500)));
        assert!(!e.contains('\n') && e.chars().count() <= 201, "{e}");
    }
}
