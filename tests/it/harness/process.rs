//! The real binary as a child process, for tests that kill it or run several.

use super::{TestApp, TestEnv, WAIT, eventually};
use std::process::{Child, Command, ExitStatus, Stdio};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the real binary with `config` and extra environment.
pub fn spawn_binary(env: &TestEnv, role: &str, config: &str, vars: &[(&str, &str)]) -> Process {
    spawn_binary_logging_to(env, role, config, vars, Stdio::inherit())
}

pub fn spawn_binary_logging_to(
    env: &TestEnv,
    role: &str,
    config: &str,
    vars: &[(&str, &str)],
    stderr: Stdio,
) -> Process {
    spawn_with_config_file(role, &env.write_config(config), vars, stderr)
}

/// Starts the real binary with a configuration file already written.
pub fn spawn_with_config_file(
    role: &str,
    path: &std::path::Path,
    vars: &[(&str, &str)],
    stderr: Stdio,
) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadlink"));
    command
        .arg(role)
        .arg("--config")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(stderr);
    for (key, value) in vars {
        command.env(key, value);
    }
    Process::from(command.spawn().expect("leadlink binary starts"))
}

/// A child process (leadlink, or the browser's driver), killed and reaped when dropped: a
/// failed assertion must not leave a process behind working on the test's queues.
pub struct Process(Child);

impl From<Child> for Process {
    fn from(child: Child) -> Process {
        Process(child)
    }
}

impl Process {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }

    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.0.wait()
    }

    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.0.try_wait()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A leadlink process started from the binary, once it listens on `port`.
pub async fn process_at(env: &TestEnv, port: u16) -> TestApp {
    eventually(WAIT, "the child process listens", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    TestApp {
        addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        running: None,
        http: env.http.clone(),
    }
}

pub fn with_listen(config: &str, port: u16) -> String {
    config.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
}

/// Runs an embedded `serve` that exits right after its in-memory publish of `event`'s job,
/// then forgets the job's connect rows in the outbox: only the jobs table says it is due,
/// as after a kill -9 that took the in-process queue with it. (A writeback the worker
/// queued may stay; it does not bring the job back.)
pub async fn lose_the_published_message(env: &TestEnv, delivery: &str, event: &serde_json::Value) {
    // Slow answers, so the dying process cannot have sent before it exits.
    env.sim_put("config", serde_json::json!({"latencyMs": 1500}))
        .await;
    let port = free_port();
    let mut child = spawn_binary(
        env,
        "serve",
        &with_listen(&env.config_text(), port),
        &[("LEADLINK_FAULTS__EXIT_AFTER_PUBLISH", "true")],
    );
    let dying = process_at(env, port).await;
    let _ = dying.try_send(delivery, event).await;
    assert_eq!(child.wait().unwrap().code(), Some(3));
    // A worker quick enough to claim the job before the exit left a row for its lease's
    // end (and the writeback it queued); forget that one too.
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    env.execute_at(
        "DELETE FROM outbox WHERE topic = 'connect' AND due_at > $1",
        long_ago,
    )
    .await;
    assert_eq!(
        env.scalar("SELECT count(*) FROM outbox WHERE topic = 'connect'", &[])
            .await,
        0,
        "nothing but the jobs table says the job is due"
    );
    env.sim_put("config", serde_json::json!({"latencyMs": 0}))
        .await;
}
