//! A real Label Studio for the uploader's tests: installed (once per machine, outside the
//! checkout) and started on 127.0.0.1 with a fresh data directory by `scripts/label-studio`,
//! stopped when the [`Server`] is dropped; and a small client reading back what arrived.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/label-studio");

/// Installs Label Studio once per test process (the script is idempotent across processes).
fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new(SCRIPT).arg("install").output().unwrap();
        assert!(
            out.status.success(),
            "scripts/label-studio install failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub struct Server {
    pub dir: PathBuf,
    pub url: String,
    pub port: u16,
    /// Legacy API token ("Token …").
    pub token_file: PathBuf,
    /// Personal access token (a JWT refresh token).
    pub pat_file: PathBuf,
    token: String,
    agent: ureq::Agent,
}

impl Server {
    /// A fresh server with its data in `dir` (created empty).
    pub fn start(dir: &Path) -> Server {
        install();
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        run_script(&["start", dir.to_str().unwrap()]);
        let env = read_env(dir);
        let token_file = PathBuf::from(&env["LS_TOKEN_FILE"]);
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            dir: dir.to_path_buf(),
            url: env["LS_URL"].clone(),
            port: env["LS_PORT"].parse().unwrap(),
            token_file,
            pat_file: PathBuf::from(&env["LS_PAT_FILE"]),
            token,
            agent,
        }
    }

    /// The token's text, to check that it appears in no output.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn stop(&self) {
        run_script(&["stop", self.dir.to_str().unwrap()]);
    }

    /// Starts the stopped server again, same data, same port.
    pub fn restart(&self) {
        run_script(&[
            "start",
            self.dir.to_str().unwrap(),
            "--port",
            &self.port.to_string(),
        ]);
    }

    /// GET `path` with `query` as JSON; panics on a non-2xx answer.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Token {}", self.token));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let resp = req.call().unwrap();
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap();
        assert!((200..300).contains(&status), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// POST `body` as JSON to `path`; panics on a non-2xx answer.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Authorization", format!("Token {}", self.token))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap();
        assert!((200..300).contains(&status), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The project titled `title`, if any.
    pub fn project_id(&self, title: &str) -> Option<u64> {
        let v = self.get("/api/projects", &[("page_size", "1000")]);
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["title"] == title)
            .map(|p| p["id"].as_u64().unwrap())
    }

    /// Every task of `project` (with meta and data).
    pub fn tasks(&self, project: u64) -> Vec<Value> {
        let p = project.to_string();
        let v = self.get(
            "/api/tasks",
            &[("project", &p), ("page_size", "10000"), ("fields", "all")],
        );
        v["tasks"].as_array().unwrap().clone()
    }

    /// Every prediction of `project`'s tasks, by task id.
    pub fn predictions(&self, project: u64) -> HashMap<u64, Vec<Value>> {
        let mut out: HashMap<u64, Vec<Value>> = HashMap::new();
        for t in self.tasks(project) {
            let id = t["id"].as_u64().unwrap();
            let ps = self.get("/api/predictions", &[("task", &id.to_string())]);
            out.insert(id, ps.as_array().unwrap().clone());
        }
        out
    }

    /// The stable id of each task (`meta.edgesieve_id`) with how many tasks carry it.
    pub fn stable_id_counts(&self, project: u64) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for t in self.tasks(project) {
            let id = t["meta"]["edgesieve_id"]
                .as_str()
                .unwrap_or("(no meta)")
                .to_string();
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT)
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
    }
}

fn run_script(args: &[&str]) {
    let out = Command::new(SCRIPT).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/label-studio {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_env(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}
