//! The real binary as a child process, for tests that kill it or run several.

use super::{TestApp, TestEnv, WAIT, eventually};
use std::process::{Child, Command, Stdio};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the real binary with `config` and extra environment.
pub fn spawn_binary(env: &TestEnv, role: &str, config: &str, vars: &[(&str, &str)]) -> Child {
    spawn_binary_logging_to(env, role, config, vars, Stdio::inherit())
}

pub fn spawn_binary_logging_to(
    env: &TestEnv,
    role: &str,
    config: &str,
    vars: &[(&str, &str)],
    stderr: Stdio,
) -> Child {
    spawn_with_config_file(role, &env.write_config(config), vars, stderr)
}

/// Starts the real binary with a configuration file already written.
pub fn spawn_with_config_file(
    role: &str,
    path: &std::path::Path,
    vars: &[(&str, &str)],
    stderr: Stdio,
) -> Child {
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
    command.spawn().expect("leadlink binary starts")
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
