//! Shared by the process-level tests: start the real binary on port 0 and
//! call it over HTTP.
#![allow(dead_code, reason = "each test binary uses a part")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub(crate) const ADMIN: &str = "lgt_crash_test_admin_token_000";

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

/// A server left running by a test (a failed assertion, or simply its end)
/// is stopped with it.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(data_dir: &std::path::Path) -> Server {
    start_with(data_dir, &[])
}

/// `start` with more flags (`--database-url …`).
pub(crate) fn start_with(data_dir: &std::path::Path, args: &[&str]) -> Server {
    start_env(data_dir, args, &[])
}

/// `start_with` and environment variables.
pub(crate) fn start_env(
    data_dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loopgate"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(envs.iter().copied());
    spawn(command, "loopgate listening on ")
}

/// Starts a loopgate command as the admin (the bootstrap token `ADMIN`)
/// and reads its output until a line starts with `prefix`, which is
/// followed by the server's address; the rest of the output is drained.
pub(crate) fn spawn(mut command: Command, prefix: &str) -> Server {
    let mut child = command
        .env("LOOPGATE_BOOTSTRAP_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server printed its address")
            .unwrap();
        if let Some(address) = line.strip_prefix(prefix) {
            break address.to_owned();
        }
    };
    // Keep reading, so that the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let base = address.split("/ui").next().unwrap_or(&address).to_owned();
    Server { child, base }
}

pub(crate) async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = http
        .request(method, url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Registers the system `sys` and returns a new API key for it.
pub(crate) async fn system_key(http: &reqwest::Client, base: &str) -> String {
    let post = reqwest::Method::POST;
    let system = serde_json::json!({"id": "sys", "name": "sys", "risk_tier": "high", "oversight": "in_the_loop"});
    let (status, _) = call(
        http,
        post.clone(),
        format!("{base}/v1/systems"),
        ADMIN,
        Some(system),
    )
    .await
    .unwrap();
    assert_eq!(status, 201);
    let (_, key) = call(
        http,
        post,
        format!("{base}/v1/systems/sys/keys"),
        ADMIN,
        None,
    )
    .await
    .unwrap();
    key["secret"].as_str().unwrap().to_owned()
}

/// Runs the CLI against `base` as the admin: (success, stdout, stderr).
pub(crate) fn cli(base: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loopgate"))
        .args(args)
        .env("LOOPGATE_SERVER", base)
        .env("LOOPGATE_TOKEN", ADMIN)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Exports the audit log of `base` to `out` and verifies it offline with
/// the server's public key, as an auditor would.
pub(crate) fn export_and_verify(base: &str, out: &std::path::Path) {
    let out = out.to_str().unwrap();
    let (ok, _, stderr) = cli(base, &["audit", "export", "--out", out]);
    assert!(ok, "{stderr}");
    let (_, pubkey, _) = cli(base, &["audit", "pubkey"]);
    let (ok, _, stderr) = cli(base, &["audit", "verify", out, "--pubkey", pubkey.trim()]);
    assert!(ok, "{stderr}");
}

/// Submitting the proposal `{"action": "a", "subject": {"type": "T", "id":
/// idem}, "output": {"n": …}}` again with the idempotency key `idem`
/// answers 200 with the stored one.
pub(crate) async fn assert_replayed(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    idem: &str,
    stored: &Value,
) {
    let body = serde_json::json!({"action": "a", "subject": {"type": "T", "id": idem},
                                  "output": {"n": stored["output"]["n"]}, "idempotency_key": idem});
    let (status, again) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/v1/proposals"),
        key,
        Some(body),
    )
    .await
    .unwrap();
    assert_eq!((status, &again["id"]), (200, &stored["id"]));
}
