//! A real headless Chromium driven through chromedriver (WebDriver), for the status page.
//! Debian's `chromium` and `chromium-driver` must be installed (`.ci/run` installs them): a
//! missing one fails the test, it is never skipped.

use super::process::{Process, free_port};
use super::{WAIT, eventually};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session, with its chromedriver and its own profile directory.
pub struct Browser {
    pub client: Client,
    _driver: Process,
    profile: PathBuf,
}

impl Browser {
    pub async fn start(test_id: &str) -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the status page's browser test needs Debian's chromium and \
                 chromium-driver (apt-get install -y chromium chromium-driver, as .ci/run does)"
            );
        }
        let port = free_port();
        let driver = Process::from(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let url = format!("http://127.0.0.1:{port}");
        eventually(WAIT, "chromedriver answers", || async {
            reqwest::get(format!("{url}/status"))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let profile = std::env::temp_dir().join(format!("leadlink-chromium-{test_id}"));
        // Without the background-networking flags Chromium misbehaves on a closed network.
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("a Chromium session through chromedriver");
        Browser {
            client,
            _driver: driver,
            profile,
        }
    }

    /// The first element matching the CSS selector, once there is one: a click's
    /// navigation may still be under way, so a selector that only the next page matches
    /// waits for that page.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page within {WAIT:?}: {e}"))
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// The whole page's visible text.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Saves the whole page at `width` as `name`.png in `dir`, when a directory is given:
    /// the window is made as tall as the page for the picture.
    pub async fn screenshot(&self, dir: Option<&Path>, name: &str, width: u32) {
        let Some(dir) = dir else { return };
        self.client.set_window_size(width, 800).await.unwrap();
        let measured = self
            .client
            .execute(
                "return [document.documentElement.scrollHeight, \
                 window.outerHeight - window.innerHeight]",
                vec![],
            )
            .await
            .unwrap();
        let px = |i: usize| u32::try_from(measured[i].as_u64().unwrap_or(0)).unwrap_or(0);
        let height = (px(0) + px(1)).clamp(400, 6000);
        self.client.set_window_size(width, height).await.unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session, then the driver (on drop) and the profile.
    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
