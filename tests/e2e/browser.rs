//! The web page in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) by fantoccini, against the real bridge on the demo
//! models. The page must log in with the token, show the camera's caption and
//! labels live, answer a question as it streams, change the label set for the
//! next frame, list the timeline with a filter, and find a frame by words and by
//! "more like this". A screenshot of each page goes to target/screenshots/.
//!
//! Expected captions and answers are the scene generator's truth
//! (models/scenes/demo/scenes.jsonl), which transformers' run of these demo
//! models reproduces (models/README.md).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use owlet_e2e::broker::*;
use owlet_e2e::*;
use serde_json::{json, Value};

const TOKEN: &str = "browser-e2e-0123456789";
const LABELS: &str = r#"["car", "person", "dog", "bird", "bicycle", "package"]"#;

fn scene(name: &str) -> PathBuf {
    repo().join("models/scenes/demo").join(name)
}

/// Where the screenshots go (README: "What the page looks like").
pub(crate) fn screenshots() -> PathBuf {
    let d = repo().join("target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A bridge on the demo models, a watched folder as its camera "door", with
/// captions, the history and the web page behind a token.
fn start_bridge(dir: &Path, port: u16) -> (Daemon, PathBuf) {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let cfg = dir.join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"hallway\"\nstate_dir = \"{}\"\n\
             [clip]\nmodel = \"{}\"\nlabels = {LABELS}\n\
             [blip2]\nmodel = \"{}\"\n\
             [index]\nprecision = \"f32\"\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n\
             [[cameras]]\nname = \"door\"\ncaptions = true\n\
             source = {{ kind = \"folder\", path = \"{}\", watch = true }}\n",
            dir.join("state").display(),
            demo_clip_bundle(),
            demo_blip2_bundle(),
            frames.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg);
    wait_for_port(port, Duration::from_secs(60));
    d.wait_watching("door"); // the test copies frames in from here on
    (d, frames)
}

/// chromedriver on a free port, for Debian's chromium.
pub(crate) struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    pub(crate) fn start(dir: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("chromedriver.log")).unwrap())
            .spawn()
            .expect("chromedriver (scripts/test installs Debian's chromium-driver)");
        wait_for_port(port, Duration::from_secs(30));
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": program("chromium"),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,960", "--lang=en-GB"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session through chromedriver")
}

/// Poll `probe` until it gives something, or fail after `timeout` with the
/// bridge's log and the page's text.
pub(crate) async fn until<T, F, Fut>(
    what: &str,
    c: &Client,
    d: &Daemon,
    timeout: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        if Instant::now() > end {
            let page = match c.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            panic!("timed out waiting for {what}\npage:\n{page}\nbridge log:\n{}", d.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element `css` finds, if any.
pub(crate) async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// The natural width of the first image `css` finds, once the browser has
/// finished loading it (0 if it could not be decoded). Images load after the
/// element that shows them, and lazily, so reading it at once would race.
pub(crate) async fn loaded_width(c: &Client, d: &Daemon, css: &str) -> u64 {
    let js = "const i = document.querySelector(arguments[0]); \
              return i && i.complete ? i.naturalWidth : null";
    until(&format!("{css} to load"), c, d, Duration::from_secs(60), || async {
        c.execute(js, vec![json!(css)]).await.ok()?.as_u64()
    })
    .await
}

pub(crate) async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// Frame ids in the order the page shows them (read in one step: the page may
/// replace its figures between two WebDriver calls).
async fn shown_frames(c: &Client) -> Vec<i64> {
    let js = "return [...document.querySelectorAll('#frames figure.frame')]\
              .map(f => Number(f.dataset.frameId))";
    let v = c.execute(js, vec![]).await.unwrap();
    v.as_array().unwrap().iter().map(|i| i.as_i64().unwrap()).collect()
}

/// The history's frames, newest first, through the JSON API.
fn api_frames(port: u16) -> Vec<Value> {
    let body = ureq::get(&format!("http://127.0.0.1:{port}/api/frames?limit=100"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["frames"].as_array().unwrap().clone()
}

fn id_of(frames: &[Value], file: &str) -> i64 {
    let f = frames.iter().find(|f| f["source"].as_str().is_some_and(|s| s.ends_with(file)));
    f.unwrap_or_else(|| panic!("{file} not in the history: {frames:?}"))["id"].as_i64().unwrap()
}

#[test]
fn the_web_page_in_chromium_shows_captions_answers_changes_labels_and_finds_frames() {
    let dir = tempfile::Builder::new().prefix("owlet-e2e-browser-").tempdir().unwrap();
    let port = free_port();
    let (mut d, frames) = start_bridge(dir.path(), port);
    let driver = Driver::start(dir.path());
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = browser(&driver).await;
        let long = Duration::from_secs(60);

        // No cookie yet: the login page, which brings the browser back.
        c.goto(&format!("{base}/")).await.unwrap();
        assert!(c.current_url().await.unwrap().path().starts_with("/login"));
        screenshot(&c, "login.png").await;
        c.find(Locator::Css("input[name=token]"))
            .await
            .unwrap()
            .send_keys("wrong-token-123")
            .await
            .unwrap();
        c.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
        // The refusal is a new page: wait for it, or the next keys go to the old one.
        let said = until("the login's refusal", &c, &d, long, || async {
            text_of(&c, ".error").await.filter(|t| !t.is_empty())
        })
        .await;
        assert!(said.contains("not the token"), "{said}");
        c.find(Locator::Css("input[name=token]")).await.unwrap().send_keys(TOKEN).await.unwrap();
        c.find(Locator::Css("form button")).await.unwrap().click().await.unwrap();
        until("the cameras page", &c, &d, long, || async {
            (c.current_url().await.ok()?.path() == "/").then_some(())
        })
        .await;
        until("the live events", &c, &d, long, || async {
            (text_of(&c, "#connection").await? == "live").then_some(())
        })
        .await;

        // A frame arrives: its caption, labels and image appear without a reload.
        std::fs::copy(scene("demo-00001.jpg"), frames.join("demo-00001.jpg")).unwrap();
        let caption = until("the caption", &c, &d, long, || async {
            text_of(&c, "section.camera[data-camera=door] .caption").await.filter(|t| !t.is_empty())
        })
        .await;
        assert_eq!(caption, "a blue bird");
        assert_eq!(text_of(&c, "section.camera .labels li .label").await.unwrap(), "bird");
        // The snapshot loads after its caption is shown: wait for the image itself.
        let loaded = loaded_width(&c, &d, "img.snapshot").await;
        assert_eq!(loaded, 320, "the frame itself is shown (320x240)");

        // A question: the answer streams in, piece by piece, then is whole.
        let ask = c.find(Locator::Css("form.ask input[name=question]")).await.unwrap();
        ask.send_keys("what colour is the bird?").await.unwrap();
        c.find(Locator::Css("form.ask button")).await.unwrap().click().await.unwrap();
        let answer = until("the answer", &c, &d, long, || async {
            let a = c.find(Locator::Css(".answer")).await.ok()?;
            match a.attr("data-state").await.ok()??.as_str() {
                "done" => a.text().await.ok(),
                "error" => panic!("the question failed: {:?}", a.text().await),
                _ => None,
            }
        })
        .await;
        assert_eq!(answer, "blue");
        let pieces =
            c.find(Locator::Css(".answer")).await.unwrap().attr("data-pieces").await.unwrap();
        assert!(pieces.unwrap().parse::<u32>().unwrap() >= 1, "the answer came as text events");
        screenshot(&c, "cameras.png").await;

        // The label set, edited in place: the next frame is scored against it.
        c.find(Locator::Css(".label-editor summary")).await.unwrap().click().await.unwrap();
        let editor = c.find(Locator::Css(".label-editor textarea")).await.unwrap();
        editor.clear().await.unwrap();
        editor.send_keys("car\nperson\npackage").await.unwrap();
        c.find(Locator::Css(".label-editor button")).await.unwrap().click().await.unwrap();
        until("the labels to be saved", &c, &d, long, || async {
            let s = c.find(Locator::Css(".label-editor .status")).await.ok()?;
            (s.attr("data-state").await.ok()?? == "saved").then_some(())
        })
        .await;
        std::fs::copy(scene("demo-00117.jpg"), frames.join("demo-00117.jpg")).unwrap();
        until("the red car's caption", &c, &d, long, || async {
            (text_of(&c, ".caption").await? == "a red car").then_some(())
        })
        .await;
        let mut shown = vec![];
        for l in c.find_all(Locator::Css("section.camera .labels li .label")).await.unwrap() {
            shown.push(l.text().await.unwrap());
        }
        shown.sort();
        assert_eq!(shown, ["car", "package", "person"], "the new set, and only it");
        assert_eq!(text_of(&c, "section.camera .labels li .label").await.unwrap(), "car");

        // The rest of the demo frames, then the timeline: all of them, newest
        // first; filtered by a label, only frames whose score for it passes.
        let mut files = vec![];
        for f in std::fs::read_dir(repo().join("models/scenes/demo")).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".jpg") && name != "demo-00001.jpg" && name != "demo-00117.jpg" {
                files.push(name);
            }
        }
        for f in &files {
            std::fs::copy(scene(f), frames.join(f)).unwrap();
        }
        let total = files.len() + 2;
        until("every frame in the history", &c, &d, long, || async {
            (api_frames(port).len() == total).then_some(())
        })
        .await;
        let history = api_frames(port);
        c.goto(&format!("{base}/timeline")).await.unwrap();
        let ids = until("the timeline", &c, &d, long, || async {
            let ids = shown_frames(&c).await;
            (ids.len() == total).then_some(ids)
        })
        .await;
        let newest_first: Vec<i64> = history.iter().map(|f| f["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, newest_first);
        c.find(Locator::Css("#filters input[name=label]"))
            .await
            .unwrap()
            .send_keys("car")
            .await
            .unwrap();
        c.find(Locator::Css("#filters button")).await.unwrap().click().await.unwrap();
        let cars = until("the filtered timeline", &c, &d, long, || async {
            let ids = shown_frames(&c).await;
            (!ids.is_empty() && ids.len() < total).then_some(ids)
        })
        .await;
        let red_car = id_of(&history, "demo-00117.jpg");
        assert!(cars.contains(&red_car), "{cars:?} lacks the red car {red_car}");
        for id in &cars {
            let f = history.iter().find(|f| f["id"] == *id).unwrap();
            let car = f["labels"].as_array().unwrap().iter().find(|l| l["label"] == "car");
            assert!(car.is_some_and(|l| l["score"].as_f64().unwrap() >= 0.5), "{f}");
        }
        assert!(c.current_url().await.unwrap().query().unwrap().contains("label=car"));
        screenshot(&c, "timeline.png").await;

        // Search by words from the header: the frame of that thing comes first,
        // its thumbnail loaded.
        let q = c.find(Locator::Css("header input[name=q]")).await.unwrap();
        q.send_keys("a red car").await.unwrap();
        c.find(Locator::Css("header .search-box button")).await.unwrap().click().await.unwrap();
        let found = until("search results", &c, &d, long, || async {
            let on_search = c.current_url().await.ok()?.path() == "/search";
            let ids = shown_frames(&c).await;
            (on_search && !ids.is_empty()).then_some(ids)
        })
        .await;
        assert_eq!(found[0], red_car, "{found:?}");
        assert_eq!(found.len(), total);
        let thumb = loaded_width(&c, &d, "#frames figure img").await;
        assert!(thumb > 0, "the thumbnail loaded");
        screenshot(&c, "search.png").await;

        // "More like this" on the best match: the frame itself first.
        c.find(Locator::Css("#frames figure a.like")).await.unwrap().click().await.unwrap();
        let like = until("frames like it", &c, &d, long, || async {
            let url = c.current_url().await.ok()?;
            let ids = shown_frames(&c).await;
            (url.query() == Some(&*format!("like={red_car}")) && !ids.is_empty()).then_some(ids)
        })
        .await;
        assert_eq!(like[0], red_car);

        // Stopped while a page holds its event stream open: the bridge still
        // exits, promptly (a graceful shutdown would wait for the stream forever).
        c.goto(&format!("{base}/")).await.unwrap();
        until("the live events", &c, &d, long, || async {
            (text_of(&c, "#connection").await? == "live").then_some(())
        })
        .await;
        assert!(d.is_running(), "{}", d.log());
        let stopping = Instant::now();
        assert!(d.terminate(Duration::from_secs(30)).success(), "{}", d.log());
        assert!(stopping.elapsed() < Duration::from_secs(10), "took {:?}", stopping.elapsed());
        c.close().await.unwrap();
    });
}
